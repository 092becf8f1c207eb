use reqwest::{Method, StatusCode};
use serde_json::json;
use task_core::ids::{InventoryId, ProductName, TaskId, TenantId, Version};
use task_core::results::AnalysisResult;
use task_core::store::ResultStore;
use task_core::time::Timestamp;
use task_fingerprint::{Fingerprint, FingerprintData, synthetic_items};

use crate::common::{KEY_B, Server, config, tenant_a};

const ITEM: f64 = 4096.0 / 3.0 / 11_025.0;

async fn store_fingerprint(s: &Server, tenant: TenantId, id: &str, values: Vec<u32>) {
    let fingerprint = Fingerprint::new(ITEM, values).unwrap();
    let data = FingerprintData::new(&fingerprint, fingerprint.covered_secs(), 1);
    let result = AnalysisResult {
        tenant,
        product: ProductName::new("fingerprint").unwrap(),
        inventory_id: InventoryId::new(id).unwrap(),
        version: Version::new("1.0").unwrap(),
        task_id: TaskId::generate(),
        updated_at: Timestamp::from_millis(1_700_000_000_000),
        data: serde_json::to_value(&data).unwrap(),
    };
    s.store.put_result(result).await.unwrap();
}

#[tokio::test]
async fn the_match_route_gives_the_shared_segment_and_names_what_is_missing() {
    let s = Server::start_with(
        config().with_product(ProductName::new("fingerprint").unwrap()),
        false,
    )
    .await;
    let shared = synthetic_items(9, 300); // 37 s
    let mut a = synthetic_items(1, 100);
    a.extend(&shared);
    let mut b = synthetic_items(2, 250);
    b.extend(&shared);
    b.extend(synthetic_items(3, 40));
    store_fingerprint(&s, tenant_a(), "ep-a", a).await;
    store_fingerprint(&s, tenant_a(), "ep-b", b.clone()).await;
    store_fingerprint(&s, TenantId::new("beta").unwrap(), "ep-b", b).await;

    let (status, body) = s
        .get("/fingerprint/match?inventory_id=ep-a&against=ep-b")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["version"].clone(), body["against_version"].clone()),
        (json!("1.0"), json!("1.0"))
    );
    let segments = body["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 1, "{body}");
    let start = segments[0]["start"].as_f64().unwrap();
    let against_start = segments[0]["against_start"].as_f64().unwrap();
    assert!((start - 100.0 * ITEM).abs() < 1.0, "{body}");
    assert!((against_start - 250.0 * ITEM).abs() < 1.0, "{body}");

    let (status, body) = s
        .get("/fingerprint/match?inventory_id=ep-a&against=ep-c")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["detail"].as_str().unwrap().contains("\"ep-c\""),
        "{body}"
    );
    let (status, body) = s.get("/fingerprint/match?inventory_id=ep-a").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["query", "against"]));
    let (status, _) = s
        .call(
            Method::GET,
            "/fingerprint/match?inventory_id=ep-b&against=ep-a",
            Some(KEY_B),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "tenant beta has no ep-a, and cannot see alpha's"
    );
}

#[tokio::test]
async fn the_match_route_is_404_while_the_product_is_not_enabled() {
    let s = Server::start().await;
    let (status, body) = s.get("/fingerprint/match?inventory_id=a&against=b").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["detail"].as_str().unwrap().contains("not enabled"),
        "{body}"
    );
}
