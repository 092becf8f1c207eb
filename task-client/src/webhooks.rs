//! The webhook routes: subscriptions, their deliveries, and re-sending one.

use task_api::webhooks::{
    CreatedWebhookView, DeliveryPage, DeliveryView, NewWebhookBody, WebhookList, WebhookView,
};

use crate::{Client, ClientError, encode, with_query};

/// Which deliveries `GET /webhooks/{id}/deliveries` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// Only those in this state: `pending`, `delivered` or `failed`.
    pub state: Option<String>,
    /// Page size (1-500; the service's default is 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl Client {
    /// `POST /webhooks`: the subscription and its signing secret (shown only this once).
    pub async fn create_webhook(
        &self,
        webhook: &NewWebhookBody,
    ) -> Result<CreatedWebhookView, ClientError> {
        self.call(reqwest::Method::POST, "/webhooks", Some(webhook))
            .await
            .map(|(view, _)| view)
    }

    /// `GET /webhooks`: the tenant's subscriptions.
    pub async fn list_webhooks(&self) -> Result<Vec<WebhookView>, ClientError> {
        let list: WebhookList = self.get("/webhooks").await?;
        Ok(list.webhooks)
    }

    /// `GET /webhooks/{id}`.
    pub async fn get_webhook(&self, id: &str) -> Result<WebhookView, ClientError> {
        self.get(&format!("/webhooks/{}", encode(id))).await
    }

    /// `DELETE /webhooks/{id}`: the subscription and its deliveries.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/webhooks/{}", encode(id));
        let method = reqwest::Method::DELETE;
        let response = self.send(method.clone(), &path, None::<&()>).await?;
        self.check(method, &path, response).await.map(|_| ())
    }

    /// `GET /webhooks/{id}/deliveries`: newest first.
    pub async fn deliveries(
        &self,
        id: &str,
        query: &DeliveryQuery,
    ) -> Result<DeliveryPage, ClientError> {
        let mut params = Vec::new();
        if let Some(state) = &query.state {
            params.push(("state".to_owned(), state.clone()));
        }
        if let Some(limit) = query.limit {
            params.push(("limit".to_owned(), limit.to_string()));
        }
        if let Some(cursor) = &query.cursor {
            params.push(("cursor".to_owned(), cursor.clone()));
        }
        let path = format!("/webhooks/{}/deliveries", encode(id));
        self.get(&with_query(&path, &params)).await
    }

    /// `POST /webhooks/{id}/deliveries/{delivery_id}/resend`: due again at once.
    pub async fn resend_delivery(
        &self,
        id: &str,
        delivery_id: &str,
    ) -> Result<DeliveryView, ClientError> {
        let path = format!(
            "/webhooks/{}/deliveries/{}/resend",
            encode(id),
            encode(delivery_id)
        );
        self.call(reqwest::Method::POST, &path, None::<&()>)
            .await
            .map(|(view, _)| view)
    }
}
