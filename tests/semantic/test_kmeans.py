import torch

from audiolm.semantic.kmeans import assign, fit_kmeans, inertia


def _blobs(k=8, d=16, per=400, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 3
    labels = torch.arange(k).repeat_interleave(per)
    x = centres[labels] + spread * torch.randn(k * per, d, generator=g)
    perm = torch.randperm(k * per, generator=g)
    return x[perm], labels[perm], centres


def test_recovers_well_separated_clusters():
    x, labels, centres = _blobs()
    found = fit_kmeans(x, 8, steps=100, batch_size=1024, seed=0, progress=False)
    ids = assign(x, found)
    # each true cluster maps to exactly one found id, and vice versa
    pairs = set(zip(labels.tolist(), ids.tolist(), strict=True))
    assert len(pairs) == 8 and len({p[1] for p in pairs}) == 8
    assert inertia(x, found) < 2 * 16 * 0.05**2
    # every found centre sits on a true centre
    assert torch.cdist(found, centres).min(dim=1).values.max() < 0.1


def test_deterministic_for_a_seed_and_seed_matters():
    x, _, _ = _blobs(k=20, spread=1.0)
    a = fit_kmeans(x, 20, steps=30, batch_size=256, seed=1, progress=False)
    b = fit_kmeans(x, 20, steps=30, batch_size=256, seed=1, progress=False)
    c = fit_kmeans(x, 20, steps=30, batch_size=256, seed=2, progress=False)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_assign_in_chunks_equals_one_shot():
    x, _, centres = _blobs(spread=1.0)
    assert torch.equal(assign(x, centres, chunk=7), torch.cdist(x, centres).argmin(-1))
