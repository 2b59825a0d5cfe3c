-- A chain's head follows its rows (docs/ARCHITECTURE.md, "Change history"): the row's insert
-- moves it, inside SQLite, instead of a second statement from the writer. A writer already
-- holds the database's write lock when it appends (it wrote first), so it reads the head
-- without taking it.
CREATE TRIGGER change_log_moves_head AFTER INSERT ON change_log
BEGIN
    INSERT INTO change_head (chain, last_id, hash)
    VALUES (coalesce(NEW.customer_id, 0), NEW.id, NEW.hash)
    ON CONFLICT (chain) DO UPDATE SET last_id = excluded.last_id, hash = excluded.hash;
END;
