import pytest
import yaml

from audiolm.config import ConfigError, PipelineConfig, config_hash, load_config

from .conftest import REPO


def test_yaml_overrides_defaults_and_cli_overrides_yaml(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("semantic:\n  num_clusters: 50\n  backend: mfcc\ndata:\n  demo:\n    voices: 3\n")
    cfg = load_config(path, ["semantic.num_clusters=200", "data.max_seconds=12"])
    assert cfg.name == "p"  # from the file name
    assert cfg.semantic.num_clusters == 200 and cfg.semantic.backend == "mfcc"
    assert cfg.data.demo.voices == 3 and cfg.data.max_seconds == 12.0
    assert cfg.semantic.kmeans_steps == PipelineConfig().semantic.kmeans_steps


@pytest.mark.parametrize("override, needle", [
    ("semantic.num_clusterz=3", "semantic.num_clusterz"),
    ("semantic.num_clusters=many", "semantic.num_clusters"),
    ("semantic.utterance_norm=3", "semantic.utterance_norm"),
    ("nosection.key=1", "nosection"),
    ("data.demo.voices=1.5", "data.demo.voices"),
])
def test_bad_keys_and_types_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(None, [override])


def test_missing_file_and_malformed_override():
    with pytest.raises(ConfigError, match="no such pipeline config"):
        load_config("does/not/exist.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["semantic.num_clusters"])


@pytest.mark.parametrize("path", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_pipeline_loads(path):
    cfg = load_config(path)
    own = yaml.safe_load(path.read_text()).get("name")  # demo-text.yaml adds to the demo's run: name demo
    assert cfg.name == (own or path.stem)


def test_config_hash_follows_values():
    a, b = PipelineConfig(), PipelineConfig()
    assert config_hash(a.semantic) == config_hash(b.semantic)
    b.semantic.num_clusters += 1
    assert config_hash(a.semantic) != config_hash(b.semantic)


def test_base_yaml_is_read_first_and_overridden_section_by_section(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\nlm:\n  coarse: {dim: 96, train: {steps: 10, learning_rate: 0.01}}\n")
    (tmp_path / "long.yaml").write_text("base: base.yaml\nlm:\n  coarse: {train: {steps: 40}}\n")
    cfg = load_config(tmp_path / "long.yaml")
    assert cfg.name == "long"  # named after its own file
    assert cfg.lm.coarse.dim == 96 and cfg.lm.coarse.train.learning_rate == 0.01 and cfg.lm.coarse.train.steps == 40
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="refers back to itself"):
        load_config(tmp_path / "loop.yaml")
    long = load_config(REPO / "pipelines" / "demo-long.yaml")
    demo = load_config(REPO / "pipelines" / "demo.yaml")
    assert long.name == "demo-long" and long.data == demo.data  # the same corpus
    parts = lambda c: (c.semantic.encoder, c.codec, c.lm.semantic, c.lm.coarse, c.lm.fine)  # noqa: E731
    for a, b in zip(parts(long), parts(demo), strict=True):  # at least 4x the training, and the time for it
        assert a.train.steps >= 4 * b.train.steps and a.train.max_minutes >= 4 * b.train.max_minutes
