-- What inside the tool a finding is about (a parameter path such as `params.page`), where that is
-- narrower than the tool: repeated findings of one detector on one tool and subject are shown as
-- one row of an incident. Null for findings about the tool (or the tenant) as a whole.
alter table findings add column subject text;
