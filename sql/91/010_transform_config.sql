-- The 7.1 configuration into the 9.1 tables: from the staging schema v71
-- (tables exactly as 7.1 has them, filled from the 7.1 server or from an
-- imsx_config.dat export) into the 9.1 tables, in one call:
--
--     SELECT * FROM v71.transform_config();
--
-- It replaces: whatever configuration the 9.1 tables held before is gone
-- afterwards, so running it twice gives the same result as running it once,
-- and importing an export into a 9.1 server that already has settings
-- leaves exactly the export's settings. One statement, so all or nothing.
--
-- Created in schema v71 with the staging tables, and dropped with them.

CREATE FUNCTION v71.transform_config(
    OUT typed_settings       bigint,
    OUT legacy_settings      bigint,
    OUT policy_rules         bigint,
    OUT euq_approved_senders bigint,
    OUT component_versions   bigint,
    OUT admin_accounts       bigint,
    OUT scheduled_tasks      bigint)
LANGUAGE plpgsql AS $$
DECLARE
    target    text;
    setting   record;
    mapping   compat71.setting_key;
    bad       record;
BEGIN
    -- Settings: every typed table back to its 9.1 defaults, then each 7.1
    -- key into its column, or kept verbatim when 9.1 has no column for it.
    DELETE FROM compat71.setting_origin;
    DELETE FROM compat71.legacy_setting;
    FOR target IN SELECT DISTINCT target_table FROM compat71.setting_key LOOP
        EXECUTE format('DELETE FROM public.%I', target);
        EXECUTE format('INSERT INTO public.%I DEFAULT VALUES', target);
    END LOOP;
    typed_settings := 0;
    legacy_settings := 0;
    FOR setting IN
        SELECT 'tb_global_setting' AS source_table, g.section::text, g.name::text, g.value, g.inifile::text
          FROM v71.tb_global_setting g
        UNION ALL
        SELECT 'tb_euq_setting', '', e.name::text, e.value, NULL
          FROM v71.tb_euq_setting e
        ORDER BY 1, 2, 3
    LOOP
        SELECT * INTO mapping
          FROM compat71.setting_key k
         WHERE (k.source_table, k.section, k.name) = (setting.source_table, setting.section, setting.name);
        IF FOUND THEN
            PERFORM compat71.store_setting(mapping, setting.value);
            INSERT INTO compat71.setting_origin (source_table, section, name, inifile, value_71)
            VALUES (setting.source_table, setting.section, setting.name, setting.inifile, setting.value);
            typed_settings := typed_settings + 1;
        ELSE
            INSERT INTO compat71.legacy_setting (source_table, section, name, value, inifile)
            VALUES (setting.source_table, setting.section, setting.name, setting.value, setting.inifile);
            legacy_settings := legacy_settings + 1;
        END IF;
    END LOOP;

    -- Policy rules, with their 7.1 ids.
    SELECT rule_name, route_type, action INTO bad
      FROM v71.tb_policy_rule
     WHERE compat71.rule_direction_name(route_type) IS NULL
        OR compat71.policy_action_name(action) IS NULL
     ORDER BY rule_id
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'the 7.1 policy rule % has route type % and action %, which 9.1 does not know: correct the rule on the 7.1 console, then run again',
            quote_literal(bad.rule_name), bad.route_type, bad.action;
    END IF;
    DELETE FROM public.policy_rule;
    INSERT INTO public.policy_rule
           (rule_id, name, enabled, priority, direction, sender_scope, recipient_scope,
            scan_condition, action, notification, created_at, modified_at)
    SELECT rule_id, rule_name, enabled, priority, compat71.rule_direction_name(route_type), senders, recipients,
           scan_condition, compat71.policy_action_name(action), notification,
           created_time AT TIME ZONE 'UTC', modified_time AT TIME ZONE 'UTC'
      FROM v71.tb_policy_rule;
    GET DIAGNOSTICS policy_rules = ROW_COUNT;

    DELETE FROM public.euq_approved_sender;
    INSERT INTO public.euq_approved_sender (owner_address, sender_pattern, created_at)
    SELECT owner_address, sender_pattern, created_time AT TIME ZONE 'UTC'
      FROM v71.tb_euq_approved_sender
     ORDER BY owner_address, sender_pattern;
    GET DIAGNOSTICS euq_approved_senders = ROW_COUNT;

    -- The real versions, not 9.1's defaults (seed: the console showed the
    -- defaults until the next update).
    DELETE FROM public.component_version;
    INSERT INTO public.component_version (component, kind, version, updated_at)
    SELECT component, kind, version, updated_time AT TIME ZONE 'UTC'
      FROM v71.tb_component_version;
    GET DIAGNOSTICS component_versions = ROW_COUNT;

    DELETE FROM public.admin_account;
    INSERT INTO public.admin_account (account_id, login_name, password_hash, role, enabled, last_login_at)
    SELECT account_id, login_name, password_hash, role, enabled, last_login AT TIME ZONE 'UTC'
      FROM v71.tb_admin_account;
    GET DIAGNOSTICS admin_accounts = ROW_COUNT;

    DELETE FROM public.scheduled_task;
    INSERT INTO public.scheduled_task (task_id, name, kind, cron_schedule, enabled, last_run_at)
    SELECT task_id, task_name, task_kind, schedule, enabled, last_run AT TIME ZONE 'UTC'
      FROM v71.tb_scheduled_task;
    GET DIAGNOSTICS scheduled_tasks = ROW_COUNT;

    -- Ids 9.1 hands out next start above the ones taken over.
    PERFORM setval(pg_get_serial_sequence('public.policy_rule', 'rule_id'),
                   coalesce((SELECT max(rule_id) FROM public.policy_rule), 0) + 1, false);
    PERFORM setval(pg_get_serial_sequence('public.admin_account', 'account_id'),
                   coalesce((SELECT max(account_id) FROM public.admin_account), 0) + 1, false);
    PERFORM setval(pg_get_serial_sequence('public.scheduled_task', 'task_id'),
                   coalesce((SELECT max(task_id) FROM public.scheduled_task), 0) + 1, false);
END
$$;
