//! Catalog and stock use cases (secret key): products with their variants, price changes,
//! on-hand stock per location.

use std::collections::{BTreeMap, BTreeSet};

use kassa_domain::Money;
use kassa_domain::limits::{ON_HAND_MAX, PRODUCT_VARIANTS_MAX, VARIANT_ATTRIBUTES_MAX};
use kassa_domain::text::fields;

use crate::App;
use crate::error::{AppError, AppResult};
use crate::ports::{CreateProductOutcome, InventoryLevel, Product, SetOnHandOutcome, Variant};
use crate::validate;

/// The default inventory location, used when a request names none.
pub const DEFAULT_LOCATION: &str = "default";

pub struct NewVariant {
    pub sku: String,
    pub unit_amount_minor: i64,
    pub currency: String,
    pub attributes: BTreeMap<String, String>,
    /// Credits a paid unit grants (a credit pack); 0 for ordinary goods.
    pub credits: i64,
}

pub struct NewProduct {
    pub name: String,
    pub variants: Vec<NewVariant>,
    /// The marketplace seller it belongs to, if any.
    pub seller_id: Option<String>,
}

impl App {
    pub async fn create_product(&self, input: NewProduct) -> AppResult<Product> {
        let name = validate::shaped("name", fields::PRODUCT_NAME, &input.name)?;
        if input.variants.is_empty() || input.variants.len() > PRODUCT_VARIANTS_MAX {
            return Err(AppError::invalid(
                "variants",
                format!("must hold 1 to {PRODUCT_VARIANTS_MAX} variants"),
            ));
        }
        let product_id = self.ids.new_id("prod");
        let mut seen = BTreeSet::new();
        let mut variants = Vec::with_capacity(input.variants.len());
        for (index, variant) in input.variants.into_iter().enumerate() {
            let param = |field: &str| format!("variants[{index}].{field}");
            if !seen.insert(variant.sku.clone()) {
                return Err(AppError::invalid(
                    &param("sku"),
                    "appears twice in this product",
                ));
            }
            variants.push(checked_variant(&product_id, variant, param)?);
        }
        let product = Product {
            id: product_id,
            name,
            variants,
            seller_id: input.seller_id,
        };
        match self
            .store
            .create_product(&product, self.clock.now_secs())
            .await?
        {
            CreateProductOutcome::Created(product) => Ok(product),
            CreateProductOutcome::SkuTaken(sku) => Err(AppError::invalid(
                "variants",
                format!("sku {sku:?} already exists"),
            )),
            CreateProductOutcome::SellerMissing => {
                Err(AppError::invalid("seller_id", "no such seller"))
            }
        }
    }

    /// Changes a variant's price or active flag. Carts see the change; placed orders never do.
    pub async fn update_variant(
        &self,
        sku: &str,
        unit_amount_minor: Option<i64>,
        active: Option<bool>,
    ) -> AppResult<Variant> {
        if let Some(amount) = unit_amount_minor {
            validate::unit_amount("unit_amount", amount)?;
        }
        self.store
            .update_variant(sku, unit_amount_minor, active, self.clock.now_secs())
            .await?
            .ok_or(AppError::NotFound { what: "variant" })
    }

    pub async fn set_on_hand(
        &self,
        sku: &str,
        location: Option<&str>,
        on_hand: i64,
    ) -> AppResult<Vec<InventoryLevel>> {
        let location = validate::shaped(
            "location",
            fields::LOCATION,
            location.unwrap_or(DEFAULT_LOCATION),
        )?;
        if !(0..=ON_HAND_MAX).contains(&on_hand) {
            return Err(AppError::invalid(
                "on_hand",
                format!("must be between 0 and {ON_HAND_MAX}"),
            ));
        }
        match self
            .store
            .set_on_hand(sku, &location, on_hand, self.clock.now_secs())
            .await?
        {
            SetOnHandOutcome::Set(levels) => Ok(levels),
            SetOnHandOutcome::UnknownSku => Err(AppError::NotFound { what: "variant" }),
            SetOnHandOutcome::BelowAllocated { allocated } => Err(AppError::InvalidState {
                message: format!(
                    "on_hand cannot go below the {allocated} units already reserved or committed"
                ),
            }),
        }
    }

    pub async fn inventory(&self, sku: &str) -> AppResult<Vec<InventoryLevel>> {
        self.store
            .inventory(sku)
            .await?
            .ok_or(AppError::NotFound { what: "variant" })
    }
}

fn checked_variant(
    product_id: &str,
    variant: NewVariant,
    param: impl Fn(&str) -> String,
) -> AppResult<Variant> {
    let sku = validate::shaped(&param("sku"), fields::SKU, &variant.sku)?;
    validate::unit_amount(&param("unit_amount"), variant.unit_amount_minor)?;
    let currency = validate::currency(&param("currency"), &variant.currency)?;
    validate::credits(&param("credits"), variant.credits)?;
    if variant.attributes.len() > VARIANT_ATTRIBUTES_MAX {
        return Err(AppError::invalid(
            &param("attributes"),
            format!("at most {VARIANT_ATTRIBUTES_MAX} attributes"),
        ));
    }
    let mut attributes = BTreeMap::new();
    for (key, value) in &variant.attributes {
        let key = validate::shaped(&param("attributes"), fields::ATTRIBUTE, key)?;
        let value = validate::shaped(
            &param(&format!("attributes.{key}")),
            fields::ATTRIBUTE,
            value,
        )?;
        if attributes.insert(key, value).is_some() {
            return Err(AppError::invalid(
                &param("attributes"),
                "two keys are the same once normalised",
            ));
        }
    }
    Ok(Variant {
        sku,
        product_id: product_id.to_owned(),
        unit_price: Money::new(variant.unit_amount_minor, currency),
        attributes,
        active: true,
        credits: variant.credits,
    })
}
