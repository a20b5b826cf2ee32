-- Job leases, for several Vigil processes on one database. A claimed rotation (`running`) or
-- alert delivery (`delivering`) is held by the executor that claimed it until `lease_until`;
-- the executor of a rotation extends it while the attempt runs. Past it, the executor is taken
-- for dead (killed, or paused past its lease) and the job can be claimed again. A process no
-- longer takes back every running job when it starts: that would take another live process's.
alter table rotations add column lease_until timestamptz;
alter table alert_deliveries add column lease_until timestamptz;

-- Jobs an earlier version left claimed: their lease is over, so the next claim takes them
-- back, as that version's start-up did.
update rotations set lease_until = now() where status = 'running';
update alert_deliveries set lease_until = now() where status = 'delivering';

-- One secret is rotated by one executor at a time, across processes: at most one job of a
-- secret is running. Two processes of an earlier version could have left two; all but the
-- oldest go back to pending before the index holds it.
update rotations r set status = 'pending', next_attempt_at = now()
where r.status = 'running'
  and exists (select 1 from rotations o
              where o.secret_key = r.secret_key and o.status = 'running' and o.rotation_id < r.rotation_id);
create unique index rotations_running_secret on rotations (secret_key) where status = 'running';

-- Claims look for deliveries whose lease has lapsed.
create index alert_deliveries_leased on alert_deliveries (lease_until) where status = 'delivering';
