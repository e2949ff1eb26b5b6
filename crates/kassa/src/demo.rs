//! The sandbox's demo catalog: a few products with stock, so the printed curl example works on
//! a fresh start. Loaded once; a restart finds the SKUs and leaves them alone.

use std::collections::BTreeMap;

use std::net::SocketAddr;

use kassa_app::catalog::{NewProduct, NewVariant};
use kassa_app::checkout::HostedCheckoutUrls;
use kassa_app::{App, AppError};
use kassa_http::DemoItem;

/// (sku, unit amount in cents, size attribute).
type DemoVariant = (&'static str, i64, &'static str);

/// (product name, variants), all in EUR, 25 units each.
const DEMO: &[(&str, &[DemoVariant])] = &[
    (
        "Kassa T-shirt",
        &[
            ("TEE-S", 1999, "S"),
            ("TEE-M", 1999, "M"),
            ("TEE-L", 2199, "L"),
        ],
    ),
    ("Enamel mug", &[("MUG", 1250, "one size")]),
    ("Sticker pack", &[("STICKERS", 300, "one size")]),
];
const DEMO_STOCK_UNITS: i64 = 25;

pub async fn load(app: &App) -> Result<(), AppError> {
    for (name, variants) in DEMO {
        let input = NewProduct {
            seller_id: None,
            name: (*name).to_owned(),
            variants: variants
                .iter()
                .map(|(sku, amount, size)| NewVariant {
                    sku: (*sku).to_owned(),
                    unit_amount_minor: *amount,
                    currency: "eur".to_owned(),
                    attributes: BTreeMap::from([("size".to_owned(), (*size).to_owned())]),
                    credits: 0,
                })
                .collect(),
        };
        match app.create_product(input).await {
            Ok(_) => {
                for (sku, _, _) in variants.iter() {
                    app.set_on_hand(sku, None, DEMO_STOCK_UNITS).await?;
                }
            }
            // Already loaded on an earlier start.
            Err(AppError::InvalidRequest { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// The demo catalog as the demo storefront lists it.
pub fn catalog() -> Vec<DemoItem> {
    DEMO.iter()
        .flat_map(|(name, variants)| {
            variants.iter().map(|(sku, amount, size)| DemoItem {
                name: (*name).to_owned(),
                sku: (*sku).to_owned(),
                size: (*size).to_owned(),
                unit_amount: *amount,
                currency: "eur".to_owned(),
            })
        })
        .collect()
}

/// Where the hosted page sends the customer back in sandbox mode: the demo storefront on the
/// address `kassa serve` listens on (loopback when it listens on every interface).
pub fn return_urls(listening: SocketAddr) -> HostedCheckoutUrls {
    let host = if listening.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listening.port()))
    } else {
        listening
    };
    HostedCheckoutUrls {
        success_url: format!("http://{host}/demo/return?session_id={{CHECKOUT_SESSION_ID}}"),
        cancel_url: format!("http://{host}/demo/"),
    }
}
