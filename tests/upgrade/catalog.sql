-- A fingerprint of the extension's catalog (functions with their definitions, grants, settings and
-- descriptions; columns and defaults; indexes; constraints; triggers; relations and grants;
-- sequences; dump configuration): an upgraded database and a fresh install must print the same.
SELECT 'fn ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(array_to_string(p.proacl, ','), '') || ' ' || coalesce(array_to_string(p.proconfig, ','), '') || ' ' || coalesce(md5(obj_description(p.oid, 'pg_proc')), '-')
  FROM pg_proc p WHERE p.pronamespace = 'smslink'::regnamespace AND p.prokind <> 'a'
UNION ALL
SELECT 'col ' || c.relname || '.' || a.attname || ' ' || a.attnum || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'smslink'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v')
UNION ALL
SELECT 'idx ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'smslink'::regnamespace
UNION ALL
SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'smslink'::regnamespace
UNION ALL
SELECT 'trg ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'smslink'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'rel ' || relname || ' ' || relkind::text || ' ' || coalesce(array_to_string(relacl, ','), '') FROM pg_class WHERE relnamespace = 'smslink'::regnamespace
UNION ALL
SELECT 'seq ' || seqrelid::regclass || ' ' || seqmin || ' ' || seqmax || ' ' || seqstart FROM pg_sequence WHERE seqrelid::regclass::text LIKE 'smslink.%'
UNION ALL
SELECT 'cfg ' || unnest(extconfig)::regclass FROM pg_extension WHERE extname = 'smslink'
ORDER BY 1;
