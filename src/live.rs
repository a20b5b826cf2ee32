//! The live configuration every shard and handler reads: the policy in force, every tenant's
//! markers and every open suppression. Each is replaced whole (an `ArcSwap`) when Postgres
//! changes under it; a reader takes the `Arc` once per batch or request, without a lock.

use crate::config::Config;
use crate::detect::TenantMarkers;
use crate::event::TenantId;
use crate::policy::Policy;
use crate::policy::suppress::{Suppression, Suppressions};
use crate::store;
use anyhow::Context;
use arc_swap::ArcSwap;
use sqlx::PgPool;
use std::sync::Arc;

/// The policy, markers and suppressions in force, and where they are reloaded from.
pub struct Live {
    pool: PgPool,
    /// The policy of the files alone (`baselines/`), which the API's overrides merge over.
    files: Arc<Policy>,
    policy: ArcSwap<Policy>,
    markers: ArcSwap<TenantMarkers>,
    suppressions: ArcSwap<Suppressions>,
}

impl Live {
    /// Loads all three: the files' policy with the stored overrides, the tenants' markers, the
    /// open suppressions.
    pub async fn load(pool: PgPool, files: Policy) -> anyhow::Result<Live> {
        let files = Arc::new(files);
        let live = Live {
            pool,
            policy: ArcSwap::new(files.clone()),
            files,
            markers: ArcSwap::default(),
            suppressions: ArcSwap::default(),
        };
        live.refresh_policy()
            .await
            .context("Failed to load the tenants' policy overrides")?;
        live.refresh_markers().await.context("Failed to load tenant markers")?;
        live.refresh_suppressions()
            .await
            .context("Failed to load suppressions")?;
        Ok(live)
    }

    /// The policy in force now: the files' policy with the API's per-tenant overrides.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// The policy of the files alone.
    pub fn file_policy(&self) -> &Policy {
        &self.files
    }

    /// Every tenant's markers, for `cross_tenant_reference`.
    pub fn markers(&self) -> Arc<TenantMarkers> {
        self.markers.load_full()
    }

    /// Every tenant's open suppressions.
    pub fn suppressions(&self) -> Arc<Suppressions> {
        self.suppressions.load_full()
    }

    /// Rebuilds the policy in force: the files' policy, then every tenant override stored
    /// through the API (which replaces that tenant's file). Called at start and after an
    /// override changes. A stored override that no longer loads stops the start: a tenant
    /// silently falling back to a weaker policy is worse than a clear refusal.
    pub async fn refresh_policy(&self) -> anyhow::Result<()> {
        let mut policy = Policy::clone(&self.files);
        for (tenant, text) in store::policies::all(&self.pool).await? {
            policy
                .add_tenant(tenant.clone(), &text)
                .with_context(|| format!("The stored policy of tenant {tenant} does not load"))?;
        }
        self.policy.store(Arc::new(policy));
        Ok(())
    }

    /// Rebuilds every tenant's markers from the tenants table. Called at start and whenever a
    /// tenant is created; tenants created by another process (`vigil tenant create`) are
    /// picked up on their first ingest.
    pub async fn refresh_markers(&self) -> anyhow::Result<()> {
        let tenants = store::tenants::list(&self.pool).await?;
        let all: Vec<(TenantId, Vec<String>)> = tenants.into_iter().map(|t| (t.tenant_id, t.markers)).collect();
        let built = TenantMarkers::new(&all).context("Failed to compile the tenant markers")?;
        self.markers.store(Arc::new(built));
        Ok(())
    }

    /// Reloads every open suppression. Called at start and whenever one is written or lifted;
    /// expired ones stop applying by themselves.
    pub async fn refresh_suppressions(&self) -> anyhow::Result<()> {
        let open = store::suppressions::open(&self.pool, None).await?;
        let all = open.into_iter().map(|s| {
            (
                s.tenant_id,
                Suppression {
                    id: s.suppression_id,
                    detector: s.detector,
                    tool: s.tool,
                    expires_at: s.expires_at,
                },
            )
        });
        self.suppressions.store(Arc::new(Suppressions::new(all)));
        Ok(())
    }
}

/// Reads the policy from `baselines/default.toml` and the per-tenant overrides from
/// `baselines/tenants/<tenant id>.toml` (the folder is optional; a file whose name is not a
/// tenant id is an error, so a typo cannot silently apply to no one).
pub fn load_policy(config: &Config) -> anyhow::Result<Policy> {
    let path = config.baselines_dir.join("default.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("Failed to read the policy {} (set VIGIL_BASELINES_DIR)", path.display()))?;
    let mut policy =
        Policy::from_toml(&text).with_context(|| format!("Failed to load the policy {}", path.display()))?;
    let tenants_dir = config.baselines_dir.join("tenants");
    let entries = match std::fs::read_dir(&tenants_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(policy),
        Err(e) => return Err(e).with_context(|| format!("Failed to read {}", tenants_dir.display())),
    };
    let mut files: Vec<std::path::PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("Failed to read {}", tenants_dir.display()))?;
    files.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    files.sort();
    for path in files {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let tenant = TenantId::parse(stem)
            .map_err(|e| anyhow::anyhow!("{}: the file name must be a tenant id ({})", path.display(), e.message))?;
        let text = std::fs::read_to_string(&path).with_context(|| format!("Failed to read {}", path.display()))?;
        policy
            .add_tenant(tenant, &text)
            .with_context(|| format!("Failed to load the tenant policy {}", path.display()))?;
    }
    Ok(policy)
}
