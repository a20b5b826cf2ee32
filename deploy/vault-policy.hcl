# Vigil's least-privilege policy for Vault / OpenBao: exactly the calls Vigil makes for each
# binding kind (src/secrets/vault.rs), on the paths of one naming convention, and nothing else.
#
# Load it and bind Vigil's identity to it alone (docs/operations.md, "Vault authentication"):
#   bao policy write vigil deploy/vault-policy.hcl        (or: vault policy write …)
#   AppRole:     bao write auth/approle/role/vigil token_policies=vigil token_no_default_policy=true \
#                  token_ttl=1h token_max_ttl=24h                        → VIGIL_VAULT_AUTH=approle
#   Kubernetes:  bao write auth/kubernetes/role/vigil bound_service_account_names=vigil \
#                  bound_service_account_namespaces=vigil token_policies=vigil \
#                  token_no_default_policy=true token_ttl=1h           → VIGIL_VAULT_AUTH=jwt
#   a token:     bao token create -policy=vigil -no-default-policy -orphan -period=24h
#                  → VIGIL_VAULT_TOKEN (or a file: VIGIL_VAULT_TOKEN_FILE); Vigil renews it.
#
# sudo: only lease_prefix needs it, because sys/leases/revoke-prefix and sys/leases/lookup are
# root-protected endpoints; it is granted on those two paths under database/creds/tenant-* and
# nowhere else. To run without any sudo, delete the two sys/leases blocks below and bind
# database_static_role (its rotation needs no sudo) or short-TTL dynamic credentials instead:
# a lease_prefix binding then fails at once with OpenBao's 403, recorded and alerted.
#
# Path convention (mount names `secret/` and `database/` as below; edit them if yours differ,
# and keep the shape). <tenant> is the Vigil tenant id.
#   kv2                   a tenant's KV v2 secrets live under secret/tenants/<tenant>/…
#                         {"kind": "kv2", "mount": "secret", "path": "tenants/<tenant>/github"}
#   lease_prefix          a tenant's dynamic database credentials come from roles named
#                         tenant-<tenant>…
#                         {"kind": "lease_prefix", "prefix": "database/creds/tenant-<tenant>"}
#   database_static_role  a tenant's static database roles are named tenant-<tenant>-…
#                         {"kind": "database_static_role", "mount": "database", "role": "tenant-<tenant>-app"}
# A binding outside these paths fails its rotation at once with OpenBao's 403, which is recorded
# and alerted: widen this policy on purpose, one path at a time, rather than with a wildcard.
#
# Never granted: reading database credentials (`creds/`, `static-creds/`; only the optional
# verification block at the end, commented out, does), deleting, destroying or undeleting KV
# versions, changing a secret's max_versions, cas_required or delete_version_after, listing
# secrets, and anything under sys/ or auth/ beyond leases and Vigil's own token (no policies,
# other tokens, mounts): a stolen Vigil token can rotate bound secrets, not read or keep them.

# Vigil's own token: looked up (its TTL; that it still works) and renewed before it expires. The
# default policy grants the same two; these let a token without it (-no-default-policy) work.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

# kv2: the current value is read for its field names only (values are skipped unparsed); the new
# version is written with check-and-set on the version just read.
path "secret/data/tenants/*" {
  capabilities = ["create", "read", "update"]
}

# kv2: current_version and versions are read; the retry marker (vigil_rotation_id,
# vigil_rotation_version) is written to custom_metadata, which is the only field Vigil may set.
path "secret/metadata/tenants/*" {
  capabilities = ["create", "read", "update"]
  allowed_parameters = {
    "custom_metadata" = []
  }
}

# lease_prefix: revoke every lease under the prefix (a root-protected endpoint: sudo).
path "sys/leases/revoke-prefix/database/creds/tenant-*" {
  capabilities = ["update", "sudo"]
}

# lease_prefix: count the leases before revoking and check none is left after. Optional: without
# it Vigil still revokes and records "leases_revoked": null.
path "sys/leases/lookup/database/creds/tenant-*" {
  capabilities = ["list", "sudo"]
}

# database_static_role: rotate the password now …
path "database/rotate-role/tenant-*" {
  capabilities = ["update"]
}

# … and read the role's definition before and after for last_vault_rotation. The definition
# never holds the password; database/static-creds/ (which does) is not granted.
path "database/static-roles/tenant-*" {
  capabilities = ["read"]
}

# Optional, commented out: proving revocation (src/secrets/verify.rs). With these grants, after a
# lease_prefix rotation Vigil logs in with a credential it issued itself from the same role
# (revoked with the agent's) and records "verified": true when the database refuses it; after a
# database_static_role rotation it logs in with the password from before the rotation. The
# price: a stolen Vigil token could then issue tenant database credentials and read the static
# roles' passwords. Without them every rotation still happens, and records its check as "not
# checked: Vigil's Vault token may not read …".
#
# path "database/roles/tenant-*"        { capabilities = ["read"] }   # the role's database
# path "database/config/*"              { capabilities = ["read"] }   # its connection URL (no password)
# path "database/creds/tenant-*"        { capabilities = ["read"] }   # lease_prefix: the twin credential
# path "database/static-creds/tenant-*" { capabilities = ["read"] }   # static role: the password before
