//! OpenBao, read directly so tests check the peer's state, not Vigil's account of it.

use serde_json::{Value, json};

use crate::app::required_env;

/// OpenBao, read directly so tests check the peer's state, not Vigil's account of it.
pub struct Vault {
    addr: String,
    token: String,
    client: reqwest::Client,
}

impl Vault {
    pub fn from_env() -> Self {
        Vault::new(
            &required_env("VIGIL_TEST_VAULT_ADDR"),
            &required_env("VIGIL_TEST_VAULT_TOKEN"),
        )
    }

    /// Another OpenBao (a private one), or the shared one as another token sees it.
    pub fn new(addr: &str, token: &str) -> Self {
        Vault {
            addr: addr.to_owned(),
            token: token.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn write_kv2(&self, path: &str, data: Value) -> u64 {
        let r = self
            .client
            .post(format!("{}/v1/secret/data/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .json(&json!({ "data": data }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "vault write {path}: {}", r.status());
        r.json::<Value>().await.unwrap()["data"]["version"].as_u64().unwrap()
    }

    pub async fn current_version(&self, path: &str) -> u64 {
        let r = self
            .client
            .get(format!("{}/v1/secret/metadata/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "vault metadata {path}: {}", r.status());
        r.json::<Value>().await.unwrap()["data"]["current_version"]
            .as_u64()
            .unwrap()
    }

    pub async fn read_kv2(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}/v1/secret/data/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["data"]["data"].clone()
    }

    /// Any Vault API call, for tests that set up or read engines the helpers do not cover.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn expect_ok(&self, method: &str, path: &str, body: Option<Value>) {
        let r = self.call(method, path, body).await;
        let status = r.status();
        assert!(
            status.is_success(),
            "{method} {path}: {status} {}",
            r.text().await.unwrap()
        );
    }
}
