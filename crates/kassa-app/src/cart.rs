//! Cart use cases (publishable key). A cart holds SKUs and quantities only; prices are always
//! the catalog's current ones, computed on the server (risk S1).

use kassa_domain::cart::{PricedCart, PricedLineInput, PricingError, price_cart};
use kassa_domain::{Currency, MoneyError};

use crate::App;
use crate::error::{AppError, AppResult};
use crate::ports::{Cart, CartRefusal};
use crate::validate;
use kassa_domain::text::fields;

/// A cart as the API shows it: stored lines priced at current catalog prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartView {
    pub id: String,
    pub currency: Currency,
    /// Line ids in the same order as `priced.lines`.
    pub line_ids: Vec<String>,
    pub priced: PricedCart,
}

impl App {
    pub async fn create_cart(&self, currency: &str) -> AppResult<CartView> {
        let currency = validate::currency("currency", currency)?;
        let id = self.ids.new_id("cart");
        self.store
            .create_cart(&id, currency, self.clock.now_secs())
            .await?;
        self.cart_view(&id).await
    }

    pub async fn cart_view(&self, cart_id: &str) -> AppResult<CartView> {
        let cart = self.load_cart(cart_id).await?;
        view_of(&cart)
    }

    pub async fn add_cart_line(
        &self,
        cart_id: &str,
        sku: &str,
        quantity: i64,
    ) -> AppResult<CartView> {
        validate::shaped("sku", fields::SKU, sku)?;
        validate::quantity("quantity", quantity)?;
        let cart = self.load_cart(cart_id).await?;
        let variant = self
            .store
            .variant(sku)
            .await?
            .filter(|variant| variant.active)
            .ok_or_else(|| AppError::invalid("sku", "no such product variant is for sale"))?;
        if variant.unit_price.currency() != cart.currency {
            return Err(AppError::invalid(
                "sku",
                format!(
                    "this variant is priced in {}, the cart is in {}",
                    variant.unit_price.currency(),
                    cart.currency
                ),
            ));
        }
        let line_id = self.ids.new_id("line");
        let outcome = self
            .store
            .add_cart_line(cart_id, &line_id, sku, quantity, self.clock.now_secs())
            .await?;
        refusal_to_error(outcome)?;
        self.cart_view(cart_id).await
    }

    pub async fn set_cart_line_quantity(
        &self,
        cart_id: &str,
        line_id: &str,
        quantity: i64,
    ) -> AppResult<CartView> {
        validate::quantity("quantity", quantity)?;
        let outcome = self
            .store
            .set_cart_line_quantity(cart_id, line_id, quantity, self.clock.now_secs())
            .await?;
        refusal_to_error(outcome)?;
        self.cart_view(cart_id).await
    }

    pub async fn remove_cart_line(&self, cart_id: &str, line_id: &str) -> AppResult<CartView> {
        let outcome = self
            .store
            .remove_cart_line(cart_id, line_id, self.clock.now_secs())
            .await?;
        refusal_to_error(outcome)?;
        self.cart_view(cart_id).await
    }

    pub(crate) async fn load_cart(&self, cart_id: &str) -> AppResult<Cart> {
        self.store
            .cart(cart_id)
            .await?
            .ok_or(AppError::NotFound { what: "cart" })
    }
}

/// Prices a stored cart at the prices its lines carry.
pub(crate) fn view_of(cart: &Cart) -> AppResult<CartView> {
    let inputs: Vec<PricedLineInput<'_>> = cart
        .lines
        .iter()
        .map(|line| PricedLineInput {
            sku: &line.sku,
            quantity: line.quantity,
            unit_price: line.unit_price,
        })
        .collect();
    let priced = price_cart(cart.currency, &inputs).map_err(|error| match error {
        PricingError::Money(MoneyError::Overflow) => {
            AppError::invalid("quantity", "the cart total is out of range")
        }
        other => AppError::InvalidState {
            message: format!("the cart cannot be priced: {other:?}"),
        },
    })?;
    Ok(CartView {
        id: cart.id.clone(),
        currency: cart.currency,
        line_ids: cart.lines.iter().map(|line| line.id.clone()).collect(),
        priced,
    })
}

fn refusal_to_error(outcome: Result<(), CartRefusal>) -> AppResult<()> {
    outcome.map_err(|refusal| match refusal {
        CartRefusal::CartNotFound => AppError::NotFound { what: "cart" },
        CartRefusal::LineNotFound => AppError::NotFound { what: "cart line" },
        CartRefusal::CheckedOut { order_id } => AppError::CartAlreadyCheckedOut { order_id },
        CartRefusal::TooManyLines => AppError::invalid(
            "sku",
            format!(
                "a cart holds at most {} lines",
                kassa_domain::limits::CART_LINES_MAX
            ),
        ),
        CartRefusal::QuantityTooLarge => AppError::invalid(
            "quantity",
            format!(
                "a line holds at most {} units",
                kassa_domain::limits::LINE_QUANTITY_MAX
            ),
        ),
    })
}
