//! ServiceAccounts: stored as validated; their `token` subresource issues
//! tokens through the TokenRequest API (see `crate::sa_tokens::request`).

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Strategy, SubresourceTarget};
use crate::server::State;
use crate::status::ApiError;

pub struct ServiceAccount;
pub static SERVICE_ACCOUNT: ServiceAccount = ServiceAccount;

impl Strategy for ServiceAccount {
    fn create_subresource<'a>(
        &'a self,
        state: &'a Arc<State>,
        target: SubresourceTarget<'a>,
        body: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            match (target.sub, target.namespace) {
                ("token", Some(ns)) => {
                    crate::sa_tokens::request::create(state, ns, target.name, body).await
                }
                _ => Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource: POST serviceaccounts/{}",
                    target.sub
                ))),
            }
        })
    }
}
