//! Fixed-price offers: creation and acceptance.

use crate::db::repo::{self};
use crate::db::Conn;
use crate::domain::prices::min_licenses_for_plan;
use crate::domain::{BillingSchedule, OfferStatus, Tier};
use crate::error::{invalid, refuse, AppError};

use super::plans::{create_plan, PlanInput};
use super::{cents, customer, text_arg, tier_arg, Ts};
use crate::domain::bounds;

pub fn create_offer(
    conn: &mut Conn,
    customer_id: i64,
    tier: Tier,
    fixed_price: i64,
    sent_invoice_id: Option<&str>,
    now: Ts,
) -> Result<i64, AppError> {
    let tier = tier_arg("tier", tier)?;
    if !matches!(
        tier,
        Tier::CloudStandard | Tier::CloudPlus | Tier::SelfHostedBasic | Tier::SelfHostedBusiness
    ) {
        return Err(refuse("tier", format!("offers are for cloud_standard, cloud_plus, self_hosted_basic or self_hosted_business (got {tier})")));
    }
    let fixed_price = cents(
        "fixed_price_cents",
        fixed_price,
        bounds::MAX_FIXED_PRICE_CENTS,
    )?;
    let sent_invoice_id = sent_invoice_id
        .map(|s| text_arg("sent_invoice_id", s, bounds::MAX_TEXT_CHARS))
        .transpose()?;
    conn.joined(|c| {
        customer(c, customer_id)?;
        repo::insert_offer(
            c,
            customer_id,
            tier,
            fixed_price,
            sent_invoice_id.as_deref(),
            now,
        )
        .map_err(|e| match e.constraint() {
            Some(_) => invalid(format!(
                "customer {customer_id} already has a configured offer"
            )),
            None => AppError::from(e),
        })
    })
}

pub fn accept_offer(
    conn: &mut Conn,
    id: i64,
    schedule: BillingSchedule,
    licenses: Option<i64>,
    now: Ts,
) -> Result<i64, AppError> {
    conn.joined(|c| {
        let offer = repo::get_offer(c, id)?
            .ok_or_else(|| AppError::NotFound(format!("offer {id} does not exist")))?;
        if offer.status != OfferStatus::Configured {
            return Err(invalid(format!("offer {id} was already accepted")));
        }
        let cust = customer(c, offer.customer_id)?;
        let licenses = match licenses {
            Some(l) => l,
            None => i64::from(cust.seat_count.unwrap_or(0))
                .max(min_licenses_for_plan(&cust, offer.tier)),
        };
        let input = PlanInput {
            automanage_licenses: true,
            invoice_billing: offer.sent_invoice_id.is_some(),
            fixed_price: Some(offer.fixed_price),
            ..PlanInput::new(cust.id, offer.tier, schedule, licenses)
        };
        let plan_id = create_plan(c, &input, now)?;
        repo::set_offer_status(c, id, OfferStatus::Processed)?;
        Ok(plan_id)
    })
}
