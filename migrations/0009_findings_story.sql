-- A finding joins an open incident that already holds one of the same detector about the same
-- tool (src/store/incidents.rs, record): this index answers that question without reading
-- every finding of a large incident.
create index findings_story on findings (incident_id, detector, tool);
