import pytest
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


def test_penalized_assignment_is_the_cheapest_path():
    """Against every id sequence of 6 frames over 3 centroids: the path found minimises summed
    squared distances + penalty x changes; fed in chunks it is the same; penalty 0 is `assign`."""
    import itertools

    from audiolm.semantic.kmeans import PenalizedAssignment, assign

    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        x, centroids = torch.randn(6, 2, generator=gen), torch.randn(3, 2, generator=gen)
        penalty = [0.0, 0.3, 1.0, 3.0][trial % 4]
        dist = ((x[:, None] - centroids[None]) ** 2).sum(-1)

        def cost(path, dist=dist, penalty=penalty):
            return sum(dist[t, k] for t, k in enumerate(path)) + penalty * sum(a != b for a, b in itertools.pairwise(path))

        best = min(cost(p) for p in itertools.product(range(3), repeat=6))
        whole = PenalizedAssignment(centroids, penalty)
        whole.feed(x)
        ids = whole.finish()
        assert abs(cost(ids.tolist()) - best) < 1e-5
        chunked = PenalizedAssignment(centroids, penalty)
        for part in x.split([1, 3, 2]):
            chunked.feed(part)
        assert torch.equal(chunked.finish(), ids)
        if penalty == 0:
            assert torch.equal(ids, assign(x, centroids))


def test_penalty_merges_a_one_frame_flicker():
    from audiolm.semantic.kmeans import PenalizedAssignment

    centroids = torch.tensor([[0.0], [1.0]])
    x = torch.tensor([[0.1], [0.0], [0.6], [0.1], [0.9], [1.0], [1.1]])  # frame 2 leans to 1, briefly
    plain, merged = PenalizedAssignment(centroids, 0.0), PenalizedAssignment(centroids, 0.5)
    for a in (plain, merged):
        a.feed(x)
    assert plain.finish().tolist() == [0, 0, 1, 0, 1, 1, 1]
    assert merged.finish().tolist() == [0, 0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="duration_penalty must be >= 0"):
        PenalizedAssignment(centroids, -1.0)
