"""The HOCON config: seed defaults, --env, --set, an operator's Flink-job .conf, credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.paths import PROJECT_ROOT
from enrolment_reconciliation.runtime.config import (
    CassandraSettings,
    ConfigError,
    StateLocations,
    check_state_locations,
    declared_settings,
    load_config,
)
from enrolment_reconciliation.runtime.settings_doc import settings_table

FLINK_CONF = Path(__file__).parents[1] / "fixtures" / "flink-enrolment-reconciliation.conf"


def test_defaults_are_the_seed_tables_values():
    cfg = load_config()
    assert (
        cfg.kafka.input_topic,
        cfg.kafka.failed_topic,
        cfg.kafka.audit_topic,
        cfg.kafka.certissue_topic,
        cfg.kafka.group_id,
    ) == (
        "sunbirddev.batch.enrolment.sync.request",
        "sunbirddev.enrolment.reconciliation.failed",
        "sunbirddev.telemetry.raw",
        "sunbirddev.issue.certificate.request",
        "sunbirddev-enrolment-reconciliation-group",
    )
    assert (
        cfg.cassandra.keyspace,
        cfg.cassandra.consumption_table,
        cfg.cassandra.enrolments_table,
        cfg.cassandra.activity_agg_table,
    ) == (
        "sunbird_courses",
        "user_content_consumption",
        "user_enrolments",
        "user_activity_agg",
    )
    assert cfg.redis.relation_cache_db == 10
    assert cfg.write.batch_size == 10
    assert cfg.activity.module_aggs_enabled is True
    assert cfg.activity.filter_processed_enrolments is True
    assert cfg.search.status_cache_expiry == 3600
    assert cfg.activity.exclude_optional_nodes is True
    assert (cfg.kafka.broker_servers, cfg.cassandra.host, cfg.cassandra.port) == (
        "localhost:9092",
        "localhost",
        9042,
    )
    assert (cfg.redis.host, cfg.redis.port) == ("localhost", 6379)


def test_env_fills_every_topic_and_the_group():
    cfg = load_config(env="prod")
    assert cfg.kafka.input_topic == "prod.batch.enrolment.sync.request"
    assert cfg.kafka.failed_topic == "prod.enrolment.reconciliation.failed"
    assert cfg.kafka.audit_topic == "prod.telemetry.raw"
    assert cfg.kafka.certissue_topic == "prod.issue.certificate.request"
    assert cfg.kafka.group_id == "prod-enrolment-reconciliation-group"


def test_set_overrides_any_key_with_its_type():
    cfg = load_config(
        env="qa",
        overrides=[
            "threshold.batch.write.size=25",
            "activity.filter.processed.enrolments=false",
            "kafka.input.topic=custom.topic:v2",
            "service.search.basePath=http://search:9000/api",
            "env=staging",
        ],
    )
    assert cfg.write.batch_size == 25
    assert cfg.activity.filter_processed_enrolments is False
    assert cfg.kafka.input_topic == "custom.topic:v2"
    assert cfg.search.base_path == "http://search:9000/api"
    assert (
        cfg.kafka.failed_topic == "staging.enrolment.reconciliation.failed"
    )  # --set env wins last


def test_bad_values_are_clear_errors():
    with pytest.raises(ConfigError, match=r"threshold\.batch\.write\.size"):
        load_config(overrides=["threshold.batch.write.size=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["no-equals-sign"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent.conf")


def test_an_operators_flink_job_conf_works_unchanged():
    cfg = load_config(FLINK_CONF)
    assert cfg.kafka.broker_servers == "kafka-1.prod:9092"
    assert cfg.kafka.input_topic == "prod.batch.enrolment.sync.request"
    assert cfg.kafka.failed_topic == "prod.activity.agg.failed"
    assert cfg.kafka.audit_topic == "prod.telemetry.raw"  # kafka.output.audit.topic
    assert cfg.kafka.certissue_topic == "prod.issue.certificate.request"
    assert (cfg.cassandra.host, cfg.cassandra.port) == ("cassandra-1.prod", 9042)
    assert (cfg.redis.host, cfg.redis.relation_cache_db) == ("redis-1.prod", 10)
    assert cfg.search.base_path == "http://10.0.0.5/search"
    # keys the Flink file does not have take our defaults
    assert cfg.activity.exclude_optional_nodes is True
    assert cfg.stream.trigger == "processing-time"


def test_credentials_come_from_the_environment_and_never_show_in_repr():
    environ = {
        "LMS_CASSANDRA_USERNAME": "lms",
        "LMS_CASSANDRA_PASSWORD": "s3cr3t-pw",
        "REDIS_PASSWORD": "r3d1s-pw",
    }
    cfg = load_config(environ=environ)
    assert cfg.cassandra.password == "s3cr3t-pw"
    assert cfg.redis.password == "r3d1s-pw"
    text = repr(cfg) + str(cfg) + repr(cfg.cassandra) + str(cfg.redis)
    assert "s3cr3t-pw" not in text and "r3d1s-pw" not in text
    assert "credentials=['username', 'password']" in repr(cfg.cassandra)  # says which are set
    assert sorted(cfg.secrets()) == ["r3d1s-pw", "s3cr3t-pw"]


def test_an_unknown_key_is_refused_with_the_closest_declared_one(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load_config(overrides=["lms-casandra.host=elsewhere"])
    assert str(refused.value) == (
        "--set lms-casandra.host: no setting has this key; did you mean 'lms-cassandra.host'?"
    )
    misspelt = tmp_path / "prod.conf"
    misspelt.write_text('kafka { broker-server = "k:9092" }\nbackfill.slices = 4\n')
    with pytest.raises(ConfigError, match=r"kafka.broker-server: .*'kafka.broker-servers'\?"):
        load_config(misspelt)
    # the Flink job family's own keys load (ignored), and so do an operator's variables
    misspelt.write_text(
        'task.parallelism = 2\nvars.host = "c-1"\nlms-cassandra.host = ${vars.host}\n'
    )
    assert load_config(misspelt).cassandra.host == "c-1"


def test_a_misspelt_key_stops_the_command_line_with_exit_2(tmp_path, capsys):
    from enrolment_reconciliation.cli import main

    conf = tmp_path / "prod.conf"
    conf.write_text("stream.trigger.intervall = 1s\n")
    code = main(["explain", "--config", str(conf), "--user", "u", "--course", "c", "--batch", "b"])
    assert code == 2
    assert "did you mean 'stream.trigger.interval'" in capsys.readouterr().err


def test_the_readme_configuration_table_is_the_declared_settings():
    # the table lives in docs/configuration.md, which the README links
    page = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    between = page.split("<!-- settings:begin -->\n")[1].split("\n<!-- settings:end -->")[0]
    assert between == settings_table(markdown=True)
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "(docs/configuration.md)" in readme


def test_help_lists_every_setting():
    from enrolment_reconciliation.cli import _parser

    text = _parser().format_help()
    for _, setting in declared_settings():
        assert setting.metadata["keys"][0] in text


def test_trigger_intervals_take_the_duration_forms_operators_write():
    def interval(text: str) -> str:
        return load_config(overrides=[f"stream.trigger.interval={text}"]).stream.trigger_interval

    assert interval("1s") == "1000 milliseconds"
    assert interval("500ms") == "500 milliseconds"
    assert interval('"10 seconds"') == "10000 milliseconds"
    assert interval('"2 minutes"') == "120000 milliseconds"
    with pytest.raises(ConfigError, match=r"stream\.trigger\.interval must be a duration"):
        interval("soon")


def test_each_section_holds_its_own_settings_and_credentials():
    cfg = load_config(env="prod", environ={"LMS_CASSANDRA_USERNAME": "lms"})
    assert isinstance(cfg.cassandra, CassandraSettings)
    assert (cfg.cassandra.host, cfg.cassandra.username) == ("localhost", "lms")
    assert cfg.kafka.group_id == "prod-enrolment-reconciliation-group"
    assert cfg.locations.stream_outbox == cfg.locations.stream_checkpoint + "/outbox"


def test_overrides_by_key_give_a_changed_copy():
    cfg = load_config()
    changed = cfg.with_overrides("backfill.slices=4", "kafka.output.audit.topic=audit.v2")
    assert (changed.backfill.slices, changed.kafka.audit_topic) == (4, "audit.v2")
    assert (cfg.backfill.slices, cfg.kafka.audit_topic) == (0, "sunbirddev.telemetry.raw")
    with pytest.raises(ConfigError, match=r"backfil.slices: no setting has this key; did you mean"):
        cfg.with_overrides("backfil.slices=4")
    with pytest.raises(ConfigError, match="must be int"):
        cfg.with_overrides("backfill.slices=many")


def test_state_lives_under_one_base_by_env_and_mode_never_under_tmp():
    cfg = load_config(env="prod", environ={"ER_STATE_DIR": "/srv/er/state"})
    assert cfg.locations == StateLocations(
        stream_checkpoint="/srv/er/state/prod/stream",
        stream_outbox="/srv/er/state/prod/stream/outbox",
        backfill_outbox="/srv/er/state/prod/backfill/outbox",
        backfill_staging="/srv/er/state/prod/backfill/staging",
    )
    assert cfg.locations.stream_query == "/srv/er/state/prod/stream/query"
    fallback = load_config(environ={"XDG_STATE_HOME": "/home/er/.local/state"})
    assert fallback.state.location == "/home/er/.local/state/enrolment-reconciliation"
    defaults = [f.metadata["default"] for _, f in declared_settings()]
    assert not [d for d in defaults if isinstance(d, str) and d.startswith("/tmp")]
    moved = load_config(
        overrides=["state.location=hdfs://nn:8020/er", "backfill.outbox.location=/x"]
    )
    assert moved.locations.stream_checkpoint == "hdfs://nn:8020/er/sunbirddev/stream"
    assert moved.locations.backfill_outbox == "/x"


def test_an_outbox_on_an_object_store_is_refused_with_where_to_put_it():
    with pytest.raises(ConfigError, match=r"stream.outbox.location is on s3a://.*atomic rename"):
        load_config(overrides=["state.location=s3a://bucket/er"])
    on_s3 = ["stream.checkpoint.location=s3a://bucket/cp", "stream.outbox.location=hdfs://nn/o"]
    assert load_config(overrides=[*on_s3, "backfill.outbox.location=hdfs://nn/b"])


def test_a_cluster_master_refuses_state_on_the_driver_s_own_disk():
    local = load_config(overrides=["state.location=/srv/er/state"]).locations
    for master in ("spark://master:7077", "yarn", "k8s://https://api:6443"):
        with pytest.raises(ConfigError, match=r"stream.checkpoint.location is /srv/er/state"):
            check_state_locations(local, shared=False, master=master)
    check_state_locations(local, shared=True, master="yarn")  # a mount every host sees
    check_state_locations(local, shared=False, master="local[*]")
    on_hdfs = load_config(overrides=["state.location=hdfs://nn:8020/er"]).locations
    check_state_locations(on_hdfs, shared=False, master="k8s://https://api:6443")
    # only what the mode uses: explain keeps no state
    check_state_locations(local, shared=False, master="yarn", used=())


def test_the_production_template_is_refused_until_every_choice_is_made():
    template = PROJECT_ROOT / "conf" / "templates" / "production.conf"
    with pytest.raises(ConfigError, match="CHOOSE"):
        load_config(template, env="prod")
    chosen = [
        "kafka.broker-servers=kafka-1:9092",
        "lms-cassandra.host=cassandra-1",
        "redis.host=redis-1",
        "service.search.basePath=http://search:9000",
        "state.location=hdfs://nn:8020/er",
    ]
    cfg = load_config(template, env="prod", overrides=chosen)
    assert (cfg.kafka.input_topic, cfg.cassandra.host) == (
        "prod.batch.enrolment.sync.request",
        "cassandra-1",
    )
