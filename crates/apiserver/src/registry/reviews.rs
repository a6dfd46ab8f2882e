//! The access and identity reviews: create-only kinds answered from the
//! caller and the authorizers, never stored (see [`crate::auth::reviews`]).

use serde_json::Value;

use super::Strategy;
use crate::auth::reviews;
use crate::handlers::Ctx;
use crate::status::ApiError;

const CREATE_ONLY: &[&str] = &["create"];

pub struct Review(fn(&Ctx<'_>, Value) -> Result<Value, ApiError>);

pub static SELF_SUBJECT_ACCESS_REVIEW: Review =
    Review(|ctx, v| reviews::self_subject_access(ctx.state, ctx.user, v));
pub static SUBJECT_ACCESS_REVIEW: Review =
    Review(|ctx, v| reviews::subject_access(ctx.state, v, None));
pub static LOCAL_SUBJECT_ACCESS_REVIEW: Review =
    Review(|ctx, v| reviews::subject_access(ctx.state, v, Some(ctx.namespace.unwrap_or_default())));
pub static SELF_SUBJECT_RULES_REVIEW: Review =
    Review(|ctx, v| reviews::self_subject_rules(ctx.state, ctx.user, v));
pub static SELF_SUBJECT_REVIEW: Review = Review(|ctx, v| Ok(reviews::self_subject(ctx.user, v)));

#[async_trait::async_trait]
impl Strategy for Review {
    async fn answer(&self, ctx: &Ctx<'_>, obj: Value) -> Option<Result<Value, ApiError>> {
        Some((self.0)(ctx, obj))
    }

    fn verbs(&self) -> &'static [&'static str] {
        CREATE_ONLY
    }
}

/// TokenReview asks the (asynchronous) token authenticators.
pub struct TokenReview;
pub static TOKEN_REVIEW: TokenReview = TokenReview;

#[async_trait::async_trait]
impl Strategy for TokenReview {
    async fn answer(&self, ctx: &Ctx<'_>, obj: Value) -> Option<Result<Value, ApiError>> {
        Some(reviews::token(ctx.state, obj).await)
    }

    fn verbs(&self) -> &'static [&'static str] {
        CREATE_ONLY
    }
}
