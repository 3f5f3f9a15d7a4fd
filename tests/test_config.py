"""EngineConfig: the seed's defaults, loading from TOML and environment, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from actors import ConfigError, EngineConfig
from actors.config import load_config, markdown_table, settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults_equal_the_seed_constants() -> None:
    cfg = EngineConfig()
    assert cfg.max_instances == 100
    assert cfg.max_queue_recipients == 10_000
    assert cfg.max_queue_size_per_recipient == 100
    assert cfg.queue_cleanup_interval_s == 300
    assert cfg.max_concurrent_processing == 1000
    assert cfg.processing_timeout_s == 120
    assert cfg.max_providers == 50
    assert cfg.drain_timeout_s == 5
    assert cfg.shutdown_timeout_s == 10
    assert cfg.max_listeners == 50
    assert cfg.occupancy_warn_ratio == 0.9


def test_the_implicit_bounds_have_documented_defaults() -> None:
    cfg = EngineConfig()
    # Meta's pair rate: about one message per 6 s on average.
    assert cfg.recipient_rate_window_s / cfg.recipient_rate_allowance == 6.0
    assert cfg.max_pending_per_customer == 20
    assert cfg.dedupe_capacity == 100_000
    for spec in settings():
        assert spec.doc
        assert spec.source


def test_the_sweep_budget_covers_every_recipient_within_the_cleanup_interval() -> None:
    cfg = EngineConfig()
    assert cfg.sweep_budget == 34  # ceil(10_000 recipients * 1 s / 300 s)
    ticks_per_interval = cfg.queue_cleanup_interval_s / cfg.sweep_tick_s
    assert cfg.sweep_budget * ticks_per_interval >= cfg.max_queue_recipients


def test_the_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EngineConfig().max_instances = 5  # type: ignore[misc]


def test_a_bad_value_names_the_key_the_value_and_the_rule() -> None:
    with pytest.raises(ConfigError, match=r"^max_instances = 0: must be an integer >= 1$"):
        EngineConfig(max_instances=0)
    with pytest.raises(
        ConfigError, match=r"processing_timeout_s = 0.0: must be a finite number > 0"
    ):
        EngineConfig(processing_timeout_s=0)
    with pytest.raises(ConfigError, match=r"occupancy_warn_ratio = 1.5: .* > 0 and <= 1"):
        EngineConfig(occupancy_warn_ratio=1.5)


def test_a_bool_is_not_an_integer_and_a_string_is_not_a_number() -> None:
    with pytest.raises(ConfigError, match="max_instances = True"):
        EngineConfig(max_instances=True)
    with pytest.raises(ConfigError, match="drain_timeout_s = '5'"):
        EngineConfig(drain_timeout_s="5")  # type: ignore[arg-type]


def test_infinite_and_nan_numbers_are_refused() -> None:
    with pytest.raises(ConfigError, match="finite"):
        EngineConfig(shutdown_timeout_s=float("inf"))
    with pytest.raises(ConfigError, match="finite"):
        EngineConfig(drain_timeout_s=float("nan"))


def test_an_int_is_accepted_for_a_seconds_key_and_stored_as_float() -> None:
    cfg = EngineConfig(drain_timeout_s=3)
    assert cfg.drain_timeout_s == 3.0
    assert type(cfg.drain_timeout_s) is float


def test_keys_that_depend_on_each_other_are_checked_together() -> None:
    with pytest.raises(ConfigError, match=r"drain_timeout_s = 20.0 must be <= shutdown_timeout_s"):
        EngineConfig(drain_timeout_s=20)
    with pytest.raises(ConfigError, match="recipient_rate_allowance = 101 must be <= max_queue"):
        EngineConfig(recipient_rate_allowance=101)
    assert EngineConfig(recipient_rate_allowance=100).recipient_rate_allowance == 100


def test_a_toml_file_sets_keys_from_its_engine_table(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(
        "[engine]\nmax_instances = 20\nprocessing_timeout_s = 30\n\n"
        '[[accounts]]\naccount_id = "a-1"\n'  # other tables belong to the gateway
    )
    cfg = load_config(path, env={})
    assert (cfg.max_instances, cfg.processing_timeout_s) == (20, 30.0)
    assert cfg.max_providers == 50


def test_a_bad_toml_value_names_the_file_the_key_and_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text('[engine]\nmax_instances = "many"\n')
    with pytest.raises(
        ConfigError,
        match=r"max_instances = 'many' \(from engine.toml \[engine\]\): must be an integer >= 1",
    ):
        load_config(path, env={})


def test_an_unknown_toml_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text("[engine]\nmax_instance = 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'max_instance'.*'max_instances'"):
        load_config(path, env={})


def test_an_unreadable_or_broken_toml_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[engine\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(broken, env={})


def test_a_misspelled_engine_table_is_refused_naming_it_and_the_right_one(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text("[engin]\nmax_instances = 3\n")
    with pytest.raises(
        ConfigError,
        match=r"^unknown table \[engin\] in '.*engine\.toml'; did you mean \[engine\]\?$",
    ):
        load_config(path, env={})


def test_a_misspelled_engine_table_is_refused_even_beside_a_right_one(tmp_path: Path) -> None:
    # Keys under the typo would be silently lost while [engine] loads.
    path = tmp_path / "engine.toml"
    path.write_text("[engine]\nmax_instances = 3\n\n[Engine]\nmax_providers = 2\n")
    with pytest.raises(ConfigError, match=r"unknown table \[Engine\].*did you mean \[engine\]"):
        load_config(path, env={})


def test_a_file_without_an_engine_table_is_refused_naming_the_tables_it_has(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nport = 8080\n\n[[accounts]]\naccount_id = "a-1"\n')
    with pytest.raises(
        ConfigError,
        match=r"^no \[engine\] table in '.*gateway\.toml' \(it has \[gateway\], \[accounts\]\)",
    ):
        load_config(path, env={})
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"no \[engine\] table .*\(it has no tables\)"):
        load_config(empty, env={})


def test_a_gateway_file_with_an_engine_table_and_its_own_tables_loads(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        "[gateway]\nport = 8080\n\n[engine]\nmax_listeners = 7\n\n"
        '[[accounts]]\naccount_id = "a-1"\n\n[[providers]]\nname = "echo"\nkind = "echo"\n'
    )
    assert load_config(path, env={}) == EngineConfig(max_listeners=7)


def test_environment_variables_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text("[engine]\nmax_instances = 20\n")
    cfg = load_config(path, env={"WAE_MAX_INSTANCES": "7", "WAE_DRAIN_TIMEOUT_S": "2.5"})
    assert (cfg.max_instances, cfg.drain_timeout_s) == (7, 2.5)


def test_keyword_overrides_win_over_the_environment() -> None:
    cfg = EngineConfig.load(env={"WAE_MAX_INSTANCES": "7"}, max_instances=3)
    assert cfg.max_instances == 3


def test_the_file_can_be_named_by_wae_config(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text("[engine]\nmax_listeners = 5\n")
    assert load_config(env={"WAE_CONFIG": str(path)}).max_listeners == 5


def test_a_bad_environment_value_names_the_variable_the_value_and_the_rule() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^max_instances = 'abc' \(from WAE_MAX_INSTANCES\): must be an integer >= 1$",
    ):
        load_config(env={"WAE_MAX_INSTANCES": "abc"})
    with pytest.raises(ConfigError, match=r"max_instances = 0 \(from WAE_MAX_INSTANCES\)"):
        load_config(env={"WAE_MAX_INSTANCES": "0"})
    with pytest.raises(ConfigError, match=r"drain_timeout_s = 'soon' \(from WAE_DRAIN_TIMEOUT_S\)"):
        load_config(env={"WAE_DRAIN_TIMEOUT_S": "soon"})


def test_an_unknown_wae_variable_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"'WAE_MAX_INSTANCE' .*did you mean 'WAE_MAX_INSTANCES'"):
        load_config(env={"WAE_MAX_INSTANCE": "3"})


def test_variables_without_the_prefix_are_ignored() -> None:
    assert load_config(env={"MAX_INSTANCES": "3", "PATH": "/bin"}) == EngineConfig()


def test_an_unknown_keyword_override_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'max_instance' .*keyword"):
        load_config(env={}, max_instance=3)


def test_every_key_has_an_environment_variable_and_a_rule() -> None:
    for spec in settings():
        assert spec.env_var == "WAE_" + spec.name.upper()
        assert spec.rule.startswith(("an integer", "a finite number", "a boolean", "a string"))


def test_readme_documents_every_key_with_its_default_and_source() -> None:
    # README's table is markdown_table(); regenerate it when this fails:
    # python -m actors
    assert markdown_table() in README.read_text()
    for spec in settings():
        assert f"| `{spec.name}` |" in markdown_table()
