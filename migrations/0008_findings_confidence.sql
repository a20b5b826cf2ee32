-- How sure Vigil is of a finding, in [0, 1] (src/detect/taxonomy.rs, docs/detection.md), fixed
-- when the finding is recorded so an incident's groups can report their highest. Null for
-- findings recorded before this column: readers apply the same rule to them.
alter table findings add column confidence double precision;
