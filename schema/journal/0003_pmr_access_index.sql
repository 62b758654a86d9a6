-- What happened under a PMR, without who looked it up. The PMR lookup (GET
-- /api/v1/pmrs/{pmr}/sessions) journals itself as an audit.query carrying the PMR, so with
-- journal_by_pmr alone every lookup would step over all the earlier lookups of that PMR, and a
-- PMR looked up often would get slower with each lookup. Queries that leave audit.query out
-- (journal::filter::exclude_audit) use this index; an index changes no row and no hash.
CREATE INDEX journal_by_pmr_access ON journal(pmr, ts) WHERE pmr <> '' AND kind <> 'audit.query';
