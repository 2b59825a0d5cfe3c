DROP TABLE successor_renewal;
DROP TABLE installation;
