//! The served OpenAPI document and the validators agree exactly: random
//! request bodies, built to sit on every rule's edges (lengths around each
//! limit, control and white-space characters, `@` and `.`, numbers at and
//! beyond each bound, RFC 3339 spellings, UUID spellings), are accepted by
//! the edge's parse-and-validate step exactly when the document's schema
//! (formats checked) accepts them. Schemathesis checks the same from outside
//! (`cli/tests/schemathesis.rs`); this finds a disagreement in milliseconds
//! and names the value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestEdge;
use edge_node::api::dto::{
    ClaimRequest, DeliverRequest, NewProviderRequest, NewRecipientRequest, NewSurplusRequest,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use sync_protocol::Timestamp;

/// The document `t` serves.
async fn document_of(t: &TestEdge) -> Value {
    let (status, doc) = t.get("/openapi.json").await;
    assert!(status.is_success(), "GET /api/v1/openapi.json: {status}");
    doc
}

/// The document a real edge on its defaults serves.
fn served_document() -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = TestEdge::start().await;
        let doc = document_of(&t).await;
        t.stop().await;
        doc
    })
}

/// A validator for `schema` (which may `$ref` the document's components),
/// formats checked as a client generator or a fuzzer checks them.
fn validator(doc: &Value, schema: Value) -> jsonschema::Validator {
    let root = json!({"components": doc["components"].clone(), "allOf": [schema]});
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("the document's schema compiles: {e}"))
}

fn component(doc: &Value, name: &str) -> jsonschema::Validator {
    validator(doc, json!({"$ref": format!("#/components/schemas/{name}")}))
}

/// Characters on the rules' edges.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(&['a', 'Z', '0', '7', '@', '.', '+', '-', '(', ')', ' '][..]),
        1 => prop::sample::select(&[
            '\t', '\n', '\r', '\u{0}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}', '\u{a0}',
            '\u{1680}', '\u{2003}', '\u{200b}', '\u{2028}', '\u{202f}', '\u{3000}', '\u{feff}',
            'é', 'ß', '🍚', '"', '\\', '/',
        ][..]),
    ]
}

/// A string of tricky characters, sometimes padded out to around a limit.
fn tricky_string() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(tricky_char(), 0..10),
        prop_oneof![3 => Just(0usize), 1 => 0usize..300],
        prop::sample::select(&['a', ' ', '1', 'é'][..]),
        prop::collection::vec(tricky_char(), 0..5),
    )
        .prop_map(|(head, pad, with, tail)| {
            let mut s: String = head.into_iter().collect();
            s.extend(std::iter::repeat_n(with, pad));
            s.extend(tail);
            s
        })
}

/// Numbers at, inside and beyond the bounds the rules name.
fn tricky_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(
            &[
                0.0,
                -0.0,
                1e-9,
                0.0004,
                0.0005,
                0.000_999_999,
                0.001,
                0.0011,
                1.0,
                89.999_999,
                90.0,
                90.000_001,
                -90.0,
                -90.000_001,
                180.0,
                180.000_001,
                -180.0,
                -180.000_001,
                100.0,
                100.000_001,
                9_999.999,
                10_000.0,
                10_000.000_001,
                1e6,
                1_000_000.000_1,
                -1.0,
                1e300,
            ][..]
        ),
        -200.0..200.0f64,
        0.0..2e6f64,
    ]
}

/// UUIDs as written correctly and in the other spellings some parsers take.
fn tricky_uuid() -> impl Strategy<Value = String> {
    (any::<u128>(), 0..7u8).prop_map(|(n, how)| {
        let u = uuid::Uuid::from_u128(n);
        match how {
            0 | 1 => u.hyphenated().to_string(),
            2 => u.hyphenated().to_string().to_uppercase(),
            3 => u.simple().to_string(),
            4 => u.braced().to_string(),
            5 => u.urn().to_string(),
            _ => format!("{}x", &u.hyphenated().to_string()[..35]),
        }
    })
}

/// RFC 3339 date-times around 2026-12-03 and near-misses.
fn tricky_date_time() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["2026-12-03", "2026-12-3", "2026-02-30", "2026-13-01"][..]),
        prop::sample::select(&["T", "t", " ", "_"][..]),
        prop::sample::select(&["10:20:30", "23:59:60", "24:00:00", "10:20", "10:60:00"][..]),
        prop::sample::select(&["", ".5", ".123", ".123456789", ".1234567891234", "."][..]),
        prop::sample::select(
            &[
                "Z", "z", "+07:00", "-03:30", "+0700", "", "+24:00", "+07:60",
            ][..],
        ),
    )
        .prop_map(|(d, t, hms, frac, zone)| format!("{d}{t}{hms}{frac}{zone}"))
}

/// Checks one body against the schema and against the edge's own
/// parse-and-validate step; they must agree.
fn agree(
    what: &str,
    body: &Value,
    schema: &jsonschema::Validator,
    edge_accepts: bool,
) -> Result<(), TestCaseError> {
    let schema_accepts = schema.is_valid(body);
    if schema_accepts != edge_accepts {
        let errors: Vec<String> = schema.iter_errors(body).map(|e| e.to_string()).collect();
        return Err(TestCaseError::fail(format!(
            "{what}: the document {} but the edge {} {body}\n(schema errors: {errors:?})",
            if schema_accepts { "accepts" } else { "refuses" },
            if edge_accepts { "accepts" } else { "refuses" },
        )));
    }
    Ok(())
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 3_000,
        failure_persistence: None,
        ..Config::default()
    })
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    if let Err(e) = runner().run(&strategy, test) {
        panic!("{e}");
    }
}

#[test]
fn providers_and_recipients_are_accepted_exactly_when_the_document_says() {
    let doc = served_document();
    let provider = component(&doc, "NewProviderRequest");
    let base = json!({"name": "Warung", "lat": -6.2, "lon": 106.8,
                      "contact_phone": "+62 21 555", "contact_email": "a@b.id"});
    let field = prop::sample::select(&["name", "contact_phone", "contact_email", "lat", "lon"][..]);
    let value = prop_oneof![
        tricky_string().prop_map(Value::from),
        tricky_number().prop_map(Value::from)
    ];
    run((field, value), |(field, value)| {
        let mut body = base.clone();
        body[field] = value;
        let edge = serde_json::from_value::<NewProviderRequest>(body.clone())
            .is_ok_and(|r| r.validate().is_ok());
        agree("POST /providers", &body, &provider, edge)
    });

    let recipient = component(&doc, "NewRecipientRequest");
    let base = json!({"name": "Bank Makanan", "lat": -6.21, "lon": 106.82, "capacity_kg_per_day": 500.0,
                      "accepted_food_types": ["bakery"], "contact_phone": "021 555", "contact_email": "ops@bank.example"});
    let names = prop::collection::vec(
        prop::sample::select(&["bakery", "dairy", "frozen", "pizza", "Bakery", ""][..]),
        0..18,
    );
    let change = prop_oneof![
        tricky_number().prop_map(|n| ("capacity_kg_per_day", Value::from(n))),
        names.prop_map(|n| ("accepted_food_types", Value::from(n))),
        tricky_string().prop_map(|s| ("name", Value::from(s))),
    ];
    run(change, |(field, value)| {
        let mut body = base.clone();
        body[field] = value;
        let edge = serde_json::from_value::<NewRecipientRequest>(body.clone())
            .is_ok_and(|r| r.validate().is_ok());
        agree("POST /recipients", &body, &recipient, edge)
    });
}

#[test]
fn surplus_and_actions_are_accepted_exactly_when_the_document_says() {
    let doc = served_document();
    let surplus = component(&doc, "NewSurplusRequest");
    // 2026-12-01T00:00Z: every date-time the strategy spells lies within
    // 14 days after it, so only the spelling decides.
    let now = Timestamp::from_unix_ms(1_796_083_200_000);
    let base = json!({"provider_id": "01a233b1-a812-78a0-87a5-890b3e7c6022", "lat": -6.2, "lon": 106.8,
                      "quantity_kg": 12.5, "food_type": "bakery", "expires_at": "2026-12-03T10:00:00Z"});
    let change = prop_oneof![
        tricky_number().prop_map(|n| ("quantity_kg", Value::from(n))),
        tricky_string().prop_map(|s| ("description", Value::from(s))),
        Just(("description", Value::Null)),
        tricky_date_time().prop_map(|s| ("expires_at", Value::from(s))),
        tricky_uuid().prop_map(|s| ("provider_id", Value::from(s))),
        prop::sample::select(&["bakery", "meat_fish", "pizza", "DAIRY"][..])
            .prop_map(|s| ("food_type", Value::from(s))),
    ];
    run(change, |(field, value)| {
        let mut body = base.clone();
        body[field] = value;
        let edge = serde_json::from_value::<NewSurplusRequest>(body.clone())
            .is_ok_and(|r| r.validate(now).is_ok());
        agree("POST /surplus", &body, &surplus, edge)
    });

    let claim = component(&doc, "ClaimRequest");
    let version = prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        tricky_number().prop_map(Value::from),
        (0u32..1000).prop_map(|n| Value::from(f64::from(n))),
    ];
    run((tricky_uuid(), version), |(id, version)| {
        let body = json!({"recipient_id": id, "version": version});
        let edge = serde_json::from_value::<ClaimRequest>(body.clone()).is_ok();
        agree("POST /surplus/{id}/claim", &body, &claim, edge)
    });

    let deliver = component(&doc, "DeliverRequest");
    run(tricky_number(), |kg| {
        let body =
            json!({"recipient_id": "01a233b1-a812-78a0-87a5-890b3e7c6022", "delivered_kg": kg});
        let edge = serde_json::from_value::<DeliverRequest>(body.clone())
            .is_ok_and(|r| r.delivered().is_ok());
        agree("POST /surplus/{id}/deliver", &body, &deliver, edge)
    });
}

/// The listing's query parameters: what the document states (this edge's
/// configured maxima included) is what the edge accepts.
#[tokio::test]
async fn the_listing_accepts_exactly_the_query_the_document_states() {
    let t = TestEdge::start_with(|c| {
        c.http.max_list_items = 40;
        c.http.max_radius_km = 25.0;
    })
    .await;
    let doc = document_of(&t).await;
    let params = doc["paths"]["/api/v1/surplus"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let schema_of = |name: &str| {
        let p = params.iter().find(|p| p["name"] == name).unwrap();
        validator(&doc, p["schema"].clone())
    };
    assert_eq!(
        params.iter().find(|p| p["name"] == "limit").unwrap()["schema"]["maximum"],
        40,
        "the document states this edge's http.max_list_items"
    );
    let cases: Vec<(&str, Value)> = vec![
        ("limit", json!(1)),
        ("limit", json!(40)),
        ("limit", json!(41)),
        ("limit", json!(0)),
        ("limit", json!(7.0)),
        ("radius_km", json!(25.0)),
        ("radius_km", json!(25.000_001)),
        ("radius_km", json!(0.0)),
        ("radius_km", json!(0.000_1)),
        ("status", json!("delivered")),
        ("status", json!("lost")),
    ];
    let mut disagreements = Vec::new();
    for (name, value) in cases {
        let documented = schema_of(name).is_valid(&value);
        let shown = match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let (status, body) = t
            .get(&format!("/surplus?lat=-6.2&lon=106.8&{name}={shown}"))
            .await;
        let accepted = status.is_success();
        if documented != accepted {
            disagreements.push(format!(
                "{name}={shown}: documented {documented}, answered {status} {body}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}
