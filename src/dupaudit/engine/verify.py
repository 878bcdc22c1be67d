"""The near-duplicate cascade: cheap candidates with high recall, then a precise check on thumbnails.

Why: one pHash radius cannot give both recall and precision on real data. On CIFAR-10 the annotated
near-duplicates (ciFAIR) reach pHash distance 18 at the 90th percentile, while at distance 10 already
30% of the pairs join two different classes. So:

1. candidates: every pair within the pHash radius (and the mirrored hash under --flips), plus each
   image's nearest neighbours by a brightness- and contrast-normalised 8x8 descriptor (faiss
   inner-product index; mirrored descriptors under --flips), plus the nearest neighbour of the descriptor
   moved by half a block (2 px) each way (`half_shifted`: re-crops by 2-3 px, which move the block means);
2. verification: the normalised cross-correlation of the two *high-passed* grayscale thumbnails (the
   32x32 pHash input, stored in the fingerprint cache), maximised over small shifts and a small zoom of
   either image. High-passing removes the coarse layout (sky above, ground below) that unrelated
   photos share, so what must correlate is the detail of the photograph. A cheap 16x16 pass drops
   the clear non-matches first; the survivors are scored at 32x32, pairs short of the threshold get a
   sub-pixel refinement, and those still short a wide search over larger crops and shifts (`wide`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np

from .hashing import THUMB_SIZE
from .model import Settings

ZOOM = 1.12  # a centre zoom tried on either image: covers crops and rescales of about 10%
# Work in chunks of about this many bytes per gathered array: a first touch of fresh memory can cost more than
# the arithmetic, and small chunks reuse the same pages (measured: docs/performance.md).
_CHUNK_BYTES = 1 << 22
_LISTS, _PROBES = 2, 6  # neighbour search: inverted lists per sqrt(images), lists searched per query
# lists searched per half-shifted query, though they are 4/5 of the search's time at a million images: fewer lose
# ciFAIR pairs (benchmarks/cascade_variants.py shifted-probes-N: 1, 2, 3 lists find 113, 114, 114 of 124; 6 find 115)
_SHIFTED_PROBES = _PROBES
APPROXIMATE_FROM = 20000  # above this many images the neighbour search is approximate (an inverted-file index)
_SCAN_QUERIES = 1 << 18  # queries per pass of probed_scan: bounds its arrays (~200 MB at k + 1 = 4, 6 probes)
_SCAN_LISTS = 64  # lists per task of probed_scan's threads: small enough to even out their lengths
_EXACT_BLOCK = 1 << 15  # rows per block of exact_nearest's scan: 8 MB of descriptors, read once for all queries
# A matrix product's similarity of two unit descriptors differs from faiss's by rounding, at most 64 float32
# roundings of products below 1 (~4e-6) each: exact_nearest screens rows by products with this much to spare.
_SCREEN_MARGIN = 1e-4


@dataclass(frozen=True, slots=True)
class CascadeSettings:
    """The operating point; defaults chosen on the ciFAIR development pairs (README, Accuracy). The two that a
    user sets come from the scan's Settings, where their defaults live."""

    neighbours: int = Settings().neighbours  # nearest neighbours per image proposed as candidates
    min_descriptor_similarity: float = 0.75  # neighbours less similar than this are not candidates
    shifted_neighbours: int = 1  # nearest neighbours proposed per half-shifted descriptor (half_shifted)
    min_coarse: float = 0.60  # 16x16 pre-check: below 99.7% of the verified pairs, drops 92% of the candidates
    refine_from: float = 0.60  # 32x32 scores from here up to min_similarity get the sub-pixel alignment search
    wide_from: float = 0.45  # 32x32 scores from here up to min_similarity get the wide alignment search (`wide`)
    wide_penalty: float = 0.02  # taken off a wide score: its extra freedom lifts different photos too
    min_similarity: float = Settings().min_similarity  # a candidate is a near duplicate when its score reaches this

    @property
    def band_from(self) -> float:
        """A 32x32 score from here up to min_similarity may still be raised by a later stage (refine, wide)."""
        return min(self.refine_from, self.wide_from)


def block_sums(thumbs: np.ndarray) -> np.ndarray:
    """(n, 64) uint16: the sums of the 8x8 blocks of 4x4 pixels of 32x32 uint8 thumbs (what descriptors need).

    Computed in the fingerprint workers, batch by batch, so the scan's main process only normalises them."""
    count = len(thumbs)
    result = np.empty((count, 64), dtype=np.uint16)
    for lo in range(0, count, 4096):  # chunked: small temporaries reuse the same memory
        chunk = np.ascontiguousarray(thumbs[lo : lo + 4096], dtype=np.uint8)
        # in integers: four pixels of a row at once as one uint32 (faster than a float mean: docs/performance.md)
        quads = chunk.reshape(len(chunk), THUMB_SIZE * THUMB_SIZE).view(np.uint32)
        rows = ((quads & 0xFF) + ((quads >> 8) & 0xFF) + ((quads >> 16) & 0xFF) + (quads >> 24)).astype(np.uint16)
        result[lo : lo + 4096] = rows.reshape(len(chunk), 8, 4, 8).sum(axis=2, dtype=np.uint16).reshape(-1, 64)
    return result


def descriptors(thumbs: np.ndarray | None = None, sums: np.ndarray | None = None) -> np.ndarray:
    """8x8 block means of 32x32 thumbs (or of their block_sums), zero-mean and unit-norm: invariant to
    brightness and contrast."""
    result = (block_sums(thumbs) if sums is None else sums).astype(np.float32) / 16
    result -= result.mean(axis=1, keepdims=True)
    result /= np.linalg.norm(result, axis=1, keepdims=True) + 1e-6
    return result


def neighbour_pairs(
    desc: np.ndarray,
    k: int,
    min_similarity: float,
    queries: np.ndarray | None = None,
    threads: int | None = None,
    raw: dict | None = None,
    query_items: np.ndarray | None = None,
    index=None,  # noqa: ANN001 - a faiss index of desc (search_index), when the caller has one already
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j), i != j, where j is among the k nearest neighbours of query i by cosine similarity.

    `raw`: when given, receives the search's answer ("similarity", "found": (queries, k + 1) arrays, -1 for
    none), which the incremental index keeps (incremental.py). `query_items`: the item each query stands for
    (default: query i is item i)."""
    count = len(desc)
    empty = np.empty(0, dtype=np.int64)
    if count < 2 or k <= 0:
        return empty, empty
    similarity, found = nearest(desc, k, queries, threads, index=index)
    if raw is not None:
        raw.update(similarity=similarity, found=found)
    return _listed_pairs(similarity, found, query_items, min_similarity)


def _listed_pairs(
    similarity: np.ndarray, found: np.ndarray, query_items: np.ndarray | None, min_similarity: float
) -> tuple[np.ndarray, np.ndarray]:
    """(owner, neighbour) for every list entry at least `min_similarity` similar, other than the owner itself."""
    items = np.arange(len(found), dtype=np.int64) if query_items is None else query_items
    owners = np.repeat(items, found.shape[1])
    found = found.reshape(-1).astype(np.int64)
    keep = (found >= 0) & (found != owners) & (similarity.reshape(-1) >= min_similarity)
    return owners[keep], found[keep]


# Half a block each way (down, up, right, left), in blocks: the descriptor of a thumbnail moved by 2 px
HALF_SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def half_shifted(desc: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """The descriptors of the thumbnails moved by half a 4x4 block (2 px): each block mean averaged with its
    neighbour `shift` blocks away (the edge block repeated), normalised again. The 8x8 block means change when a
    re-crop moves the picture by 2-3 px (the wide verification accepts those), so such copies need not be among
    each other's nearest descriptors. Computed from the descriptors alone (normalising is affine, so averaging
    normalised grids gives the same direction): the incremental index needs nothing more than it keeps."""
    result = np.asarray(desc, dtype=np.float32).reshape(-1, 64) @ _half_shift_matrix(shift)
    result /= np.linalg.norm(result, axis=1, keepdims=True) + 1e-6
    return np.ascontiguousarray(result, dtype=np.float32)


def half_shift_norms(desc: np.ndarray) -> np.ndarray:
    """(n, len(HALF_SHIFTS)) float32: what half_shifted divides each row by, per shift. With them kept, a
    half-shifted descriptor's similarity to q is desc @ (matrix @ q) / norm: the incremental index tests every
    stored row against a commit's files with one small product instead of shifting every row again."""
    desc = np.asarray(desc, dtype=np.float32).reshape(-1, 64)
    norms = np.empty((len(desc), len(HALF_SHIFTS)), dtype=np.float32)
    for lo in range(0, len(desc), 1 << 16):  # bounded memory at a million rows
        block = desc[lo : lo + (1 << 16)]
        for column, shift in enumerate(HALF_SHIFTS):
            norms[lo : lo + len(block), column] = np.linalg.norm(block @ _half_shift_matrix(shift), axis=1) + 1e-6
    return norms


def half_shift_matrix(shift: tuple[int, int]) -> np.ndarray:
    """(64, 64): half_shifted(d) is d @ this, normalised (half_shift_norms)."""
    return _half_shift_matrix(shift)


@lru_cache(maxsize=len(HALF_SHIFTS))
def _half_shift_matrix(shift: tuple[int, int]) -> np.ndarray:
    """(64, 64): a descriptor row times this is its grid plus the grid moved by `shift` blocks (edge block
    repeated), made zero-mean: one matrix product, which the incremental index runs over every stored row."""
    dy, dx = shift
    matrix = np.eye(64, dtype=np.float64)
    for row in range(8):
        for col in range(8):
            source = min(max(row + dy, 0), 7) * 8 + min(max(col + dx, 0), 7)
            matrix[source, row * 8 + col] += 1  # output block (row, col) also takes block (row + dy, col + dx)
    matrix -= matrix.mean(axis=1, keepdims=True)  # each output row zero-mean
    return matrix.astype(np.float32)


def query_segments(settings: CascadeSettings) -> list[tuple[tuple[int, int] | None, int]]:
    """The neighbour searches of the candidate stage, in the order their raw lists are kept side by side
    (incremental.py): (None: the descriptor as is, or a half shift; neighbours kept per query)."""
    if settings.neighbours <= 0:
        return []
    shifted = [(shift, settings.shifted_neighbours) for shift in HALF_SHIFTS] if settings.shifted_neighbours else []
    return [(None, settings.neighbours), *shifted]


def nearest(
    desc: np.ndarray,
    k: int,
    queries: np.ndarray | None = None,
    threads: int | None = None,
    exact: bool = False,
    index=None,  # noqa: ANN001 - search_index(desc, threads, exact), when the caller searches it more than once
) -> tuple[np.ndarray, np.ndarray]:
    """The k + 1 most similar rows of `desc` (the query itself among them) for each query: (similarity, index)."""
    if index is None:
        index = search_index(desc, threads, exact)
    elif threads:
        import faiss

        faiss.omp_set_num_threads(threads)
    if queries is None and isinstance(index, ProbedLists):
        return index.search_rows(min(k + 1, len(desc)))
    query = desc if queries is None else queries
    return index.search(query, min(k + 1, len(desc)))


def exact_nearest(desc: np.ndarray, k: int, queries: np.ndarray, threads: int | None = None):  # noqa: ANN201
    """nearest(desc, k, queries, exact=True) without building an index (faiss.knn runs the flat index's own
    search on the arrays: the same answer, no copy of a million descriptors for a commit's few queries).

    For a few queries faiss scans every row once per query, and a million rows do not stay in cache from one
    query to the next: searched block by block (_block_nearest), each row is read once for all the queries, with
    the same answer."""
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    query = np.ascontiguousarray(queries, dtype=np.float32)
    rows = np.ascontiguousarray(desc, dtype=np.float32)
    want = min(k + 1, len(rows))
    if len(rows) > _EXACT_BLOCK and _scans_query_by_query(faiss, len(query), want):
        return _block_nearest(faiss, rows, want, query)
    return faiss.knn(query, rows, want, faiss.METRIC_INNER_PRODUCT)


def _scans_query_by_query(faiss, queries: int, want: int) -> bool:  # noqa: ANN001 - the faiss module
    """Whether faiss.knn takes its query-by-query scan with a heap of the `want` best (_heap_kept): each
    similarity computed alone, the same wherever the row lies. Its other paths (matrix products for many
    queries or for fewer queries than threads, a reservoir for large k) are left to faiss."""
    few_queries = queries * 64 < faiss.cvar.distance_compute_blas_threshold
    one_per_thread = queries >= faiss.omp_get_max_threads()
    return few_queries and one_per_thread and want < faiss.cvar.distance_compute_min_k_reservoir


def _block_nearest(faiss, desc: np.ndarray, want: int, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """faiss.knn(queries, desc, want) as faiss's query-by-query scan finds it, bit for bit, in one pass of matrix
    products over blocks of rows (BLAS: several times faster than faiss's similarity at a time, and each row is
    read once for all the queries). A product's similarities differ from faiss's by rounding (< _SCREEN_MARGIN),
    so they only screen: the rows within the margin of a query's `want`-th best (every row faiss can keep) get
    faiss's own similarities (a range search over them), and the rows faiss keeps are chosen among those by its
    own rule (_heap_kept)."""
    result_sims = np.empty((len(queries), want), dtype=np.float32)
    result_ids = np.empty((len(queries), want), dtype=np.int64)
    for query, rows in enumerate(_screened(desc, want, queries)):
        sims, ids = _at_least(faiss, queries[query], np.ascontiguousarray(desc[rows]), -np.inf)
        ids = rows[ids]
        cut = float(-np.partition(-sims, want - 1)[want - 1])  # the `want`-th best similarity, as faiss has it
        result_sims[query], result_ids[query] = _heap_kept(sims, ids, want, cut)
    return result_sims, result_ids


def _screened(desc: np.ndarray, want: int, queries: np.ndarray) -> list[np.ndarray]:
    """Per query, the rows (in order) whose product similarity is within _SCREEN_MARGIN of its `want`-th best:
    a superset of the rows at least as similar as faiss's `want`-th best. A running cut per query (the
    `want`-th best of the rows kept so far) keeps the rows held few; it only rises, so no row is lost."""
    count = len(queries)
    cuts = np.full(count, -np.inf, dtype=np.float32)
    held_queries, held_rows, held_sims = [], [], []
    held = 0
    block = np.empty((count, min(_EXACT_BLOCK, len(desc))), dtype=np.float32)
    for lo in range(0, len(desc), _EXACT_BLOCK):
        hi = min(lo + _EXACT_BLOCK, len(desc))
        sims = block[:, : hi - lo]
        np.matmul(queries, desc[lo:hi].T, out=sims)
        if lo == 0 and hi - lo >= want:  # the first block sets the cuts: its `want`-th best per query
            cuts = np.partition(sims, hi - lo - want, axis=1)[:, hi - lo - want].copy()
        # (nonzero of a 2-D mask is ~6x slower than of its flat view)
        at_query, at_row = np.divmod(np.flatnonzero(sims >= (cuts - _SCREEN_MARGIN)[:, None]), hi - lo)
        held_queries.append(at_query)
        held_rows.append(at_row + lo)
        held_sims.append(sims[at_query, at_row])
        held += len(at_query)
        if held > 4 * want * count + 1024 or hi == len(desc):  # raise the cuts, drop the rows below them
            at_query, at_row, found = map(np.concatenate, (held_queries, held_rows, held_sims))
            order = np.lexsort((-found, at_query))
            at_query, at_row, found = at_query[order], at_row[order], found[order]
            starts = np.searchsorted(at_query, np.arange(count))
            full = np.bincount(at_query, minlength=count) >= want
            cuts[full] = found[starts[full] + want - 1]
            keep = found >= cuts[at_query] - _SCREEN_MARGIN
            held_queries, held_rows, held_sims = [at_query[keep]], [at_row[keep]], [found[keep]]
            held = int(np.count_nonzero(keep))
    at_query, at_row = held_queries[0], held_rows[0]
    bounds = np.searchsorted(at_query, np.arange(count + 1))
    return [np.sort(at_row[bounds[q] : bounds[q + 1]]) for q in range(count)]


def _at_least(faiss, query: np.ndarray, rows: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The rows at least `floor` similar to `query` and their similarities (faiss's range search: the same
    similarities as its knn, those strictly above the radius)."""
    radius = float(np.nextafter(np.float32(floor), np.float32(-np.inf)))
    result = faiss.RangeSearchResult(1)
    query = np.ascontiguousarray(query.reshape(1, 64))
    faiss.range_search_inner_product(faiss.swig_ptr(query), faiss.swig_ptr(rows), 64, 1, len(rows), radius, result)
    count = int(faiss.rev_swig_ptr(result.lims, 2)[1])
    sims = faiss.rev_swig_ptr(result.distances, count).copy() if count else np.empty(0, dtype=np.float32)
    ids = faiss.rev_swig_ptr(result.labels, count).copy() if count else np.empty(0, dtype=np.int64)
    return sims, ids


def _heap_kept(sims: np.ndarray, ids: np.ndarray, want: int, cut: float) -> tuple[np.ndarray, np.ndarray]:
    """The `want` rows faiss's heap keeps, from candidates (duplicates allowed) that hold every row more similar
    than `cut` (the `want`-th best similarity) and every row at the cut up to the `want`-th row at least that
    similar, in row order. The heap takes a row only when strictly more similar than its least similar entry,
    and evicts, among equally similar entries, the lowest row first. So: every row above the cut; of the rows
    at the cut, those among the first `want` rows at least as similar, the highest rows first. Returned in
    faiss's order: similarity down, among equals the highest row first."""
    ids, first = np.unique(ids, return_index=True)  # in row order
    sims = sims[first]
    above = sims > cut
    early_at_cut = (np.cumsum(sims >= cut) <= want) & (sims == cut)
    tied = np.flatnonzero(early_at_cut)[::-1][: want - int(np.count_nonzero(above))]
    kept = np.concatenate([np.flatnonzero(above), tied])
    order = np.lexsort((-ids[kept], -sims[kept]))
    return sims[kept][order], ids[kept][order]


def search_index(desc: np.ndarray, threads: int | None = None, exact: bool = False):  # noqa: ANN201 - faiss
    """What nearest() searches `desc` with: a faiss flat index up to APPROXIMATE_FROM rows, else the inverted lists
    of trained_lists scanned by matrix products (ProbedLists)."""
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    if len(desc) > APPROXIMATE_FROM and not exact:
        return ProbedLists(trained_lists(desc), desc)
    index = faiss.IndexFlatIP(64)
    index.add(desc)
    return index


def trained_lists(desc: np.ndarray):  # noqa: ANN201 - a faiss.IndexIVFFlat
    """An empty inverted-file index trained on `desc`, _PROBES lists searched per query: an exact scan of the
    _PROBES nearest of _LISTS * sqrt(n) clusters, faster than brute force with the same recall of the annotated
    CIFAR-10 pairs (benchmarks/bench_accuracy.py). The scan's search uses its quantizer (ProbedLists); the index
    file's query structures use the same lists, filled (lookup.py)."""
    count = len(desc)
    lists = max(1, int(_LISTS * np.sqrt(count)))
    index = empty_lists(lists)
    rng = np.random.default_rng(0)
    index.train(desc[rng.choice(count, size=min(count, 40 * lists), replace=False)])
    return index


def lists_from_centroids(centroids: np.ndarray):  # noqa: ANN201 - a faiss.IndexIVFScalarQuantizer
    """trained_lists' empty index again, from the centroids its training found (a scan's state keeps them): its
    quantizer routes a vector to the list faiss's add puts it in."""
    index = empty_lists(len(centroids))
    index.quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    index.is_trained = True
    return index


def empty_lists(lists: int):  # noqa: ANN201 - a faiss.IndexIVFScalarQuantizer
    """trained_lists' index before its training: `lists` inverted lists, _PROBES searched per query."""
    import faiss

    # filled, the lists hold the vectors in half precision (their residuals to the list's centroid): faiss's scan
    # of a probed list reads half the bytes, ~1.9x faster, and 99.9% of a million-image search's nearest pairs
    # are the same as with float32 lists, similarities within 1e-4 (docs/scale.md)
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(64), 64, lists, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.niter = 10  # k-means iterations (faiss: 25): the lists only route the search, the scan is exact
    index.nprobe = _PROBES
    return index


class ProbedLists:
    """trained_lists' inverted lists of `desc`, searched as faiss's index would search them (the same quantizer, the
    same `nprobe` lists per query) but exactly in float32, each probed list scanned by one matrix product for all
    the queries that probe it (probed_scan): 2-3x faster than faiss's query-by-query scan of half-precision
    lists (docs/scale.md). Holds no copy of `desc`: the scan gathers a list's rows when it reaches it."""

    def __init__(self, trained, desc: np.ndarray) -> None:  # noqa: ANN001 - trained_lists(desc)
        self.trained = trained  # owns the quantizer
        self.nprobe = trained.nprobe
        self.desc = np.ascontiguousarray(desc, dtype=np.float32)
        # the rows' own probed lists, found once: the nearest is each row's list (as faiss's add assigns it), and
        # the search of the rows themselves (search_rows) probes the others without a second quantizer pass
        self._own_probes = min(self.nprobe, trained.nlist)
        closeness, self._own = trained.quantizer.search(self.desc, self._own_probes)
        self.assigned = _nearest_lists(trained.quantizer, self.desc, closeness, self._own)
        # the rows list by list, ascending within a list (faiss's order: the same row wins an exact tie)
        self.order = np.argsort(self.assigned, kind="stable")
        self.bounds = np.searchsorted(self.assigned[self.order], np.arange(trained.nlist + 1))
        # the list faiss's add would put each query of the latest search in (its nearest list): the index file's
        # query structures are these lists filled with the shifted descriptors (lookup.py), routed for free
        self.routes = np.empty(0, dtype=np.int32)

    def search(self, queries: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's (similarity, id) of the `width` best rows per query, -1 (and float32's lowest) where fewer."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        similarity = np.empty((len(queries), width), dtype=np.float32)
        found = np.empty((len(queries), width), dtype=np.int64)
        self.routes = np.empty(len(queries), dtype=np.int32)
        for lo in range(0, len(queries), _SCAN_QUERIES):
            rows = slice(lo, lo + _SCAN_QUERIES)
            similarity[rows], found[rows] = probed_scan(self, queries[rows], width, self.routes[rows])
        return similarity, found

    def search_rows(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        """search(self.desc, width): the rows' own probes were found when the lists were made."""
        if min(self.nprobe, self.trained.nlist) != self._own_probes:
            return self.search(self.desc, width)
        similarity = np.empty((len(self.desc), width), dtype=np.float32)
        found = np.empty((len(self.desc), width), dtype=np.int64)
        for lo in range(0, len(self.desc), _SCAN_QUERIES):
            rows = slice(lo, lo + _SCAN_QUERIES)
            similarity[rows], found[rows] = probed_scan(self, self.desc[rows], width, probed=self._own[rows])
        self.routes = self.assigned
        return similarity, found

    def centroids(self) -> np.ndarray:
        """(lists, 64) float32: the quantizer's centroids (what routes a vector to its list)."""
        return self.trained.quantizer.reconstruct_n(0, self.trained.nlist)


def probed_scan(
    lists: ProbedLists,
    queries: np.ndarray,
    width: int,
    routes: np.ndarray | None = None,
    probed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ProbedLists.search of a chunk of queries: the (query, probed list) pairs grouped by list, each list's rows
    times all its queries in one product (BLAS), each pair's best `width` kept, then each query's best `width` of
    its probed lists. `routes`, when given, receives each query's nearest list (ProbedLists.routes); `probed`: the
    queries' probed lists when already known (the quantizer's search, nearest first)."""
    probes = min(lists.nprobe, len(lists.bounds) - 1)
    count = len(queries)
    if probed is None:
        closeness, probed = lists.trained.quantizer.search(queries, probes)  # the lists faiss's search would scan
        if routes is not None:
            routes[:] = _nearest_lists(lists.trained.quantizer, queries, closeness, probed)
    pairs = probed.ravel()  # pair p: query p // probes, its (p % probes)-th nearest list
    by_list = np.argsort(pairs, kind="stable")
    starts = np.searchsorted(pairs[by_list], np.arange(len(lists.bounds)))
    best = np.full((len(pairs), width), np.finfo(np.float32).min, dtype=np.float32)
    best_ids = np.full((len(pairs), width), -1, dtype=np.int64)
    names = np.nonzero((np.diff(starts) > 0) & (np.diff(lists.bounds) > 0))[0]

    def scan(lo: int, hi: int) -> None:
        for name in names[lo:hi].tolist():
            chosen = by_list[starts[name] : starts[name + 1]]
            members = lists.order[lists.bounds[name] : lists.bounds[name + 1]]
            products = queries[chosen // probes] @ lists.desc[members].T
            rows = np.arange(len(chosen))
            # a few maxima per row: far cheaper than a partition (argmax: the first of equals, the lowest row)
            for column in range(min(width, len(members))):
                top = products.argmax(axis=1)
                best[chosen, column] = products[rows, top]
                best_ids[chosen, column] = members[top]
                products[rows, top] = -np.inf

    import faiss
    from threadpoolctl import threadpool_limits

    # the lists shared among threads, each product single-threaded: on a busy machine BLAS's own threads spin on
    # each other (measured: docs/scale.md); a list's pairs are its own rows of `best`, so no two threads write one.
    # The count is read first: limiting faiss's BLAS (OpenMP) to one thread sets its OpenMP count to one as well.
    threads = faiss.omp_get_max_threads()
    with threadpool_limits(limits=1, user_api="blas"):
        _map_chunks(scan, len(names), _SCAN_LISTS, threads)
    # each query's best over its lists, in probing order on equals (faiss keeps the first scanned), then ordered
    # as faiss orders equal similarities: the higher id first
    best, best_ids = best.reshape(count, -1), best_ids.reshape(count, -1)
    keep = np.argsort(-best, axis=1, kind="stable")[:, :width]
    best, best_ids = np.take_along_axis(best, keep, axis=1), np.take_along_axis(best_ids, keep, axis=1)
    order = np.lexsort((-best_ids, -best), axis=1)
    return np.take_along_axis(best, order, axis=1), np.take_along_axis(best_ids, order, axis=1)


def _nearest_lists(quantizer, queries: np.ndarray, closeness: np.ndarray, probed: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """int32: each query's nearest list, as faiss's add routes it, from a quantizer search of several lists
    (its first column); where the first two tie (a flat image's zero descriptor ties with every list), faiss's
    add makes its own pick, asked again."""
    nearest = probed[:, 0].astype(np.int32)
    if probed.shape[1] > 1:
        tied = np.flatnonzero(closeness[:, 0] == closeness[:, 1])
        if len(tied):
            nearest[tied] = quantizer.search(queries[tied], 1)[1].ravel()
    return nearest


def _blur_matrix(size: int, sigma: float) -> np.ndarray:
    index = np.arange(size)
    kernel = np.exp(-0.5 * ((index[:, None] - index[None, :]) / sigma) ** 2)
    return (kernel / kernel.sum(axis=1, keepdims=True)).astype(np.float32)


def _zoom_matrix(size: int, zoom: float) -> np.ndarray:
    """Bilinear centre zoom as a matrix: row i samples the source at (i - centre) / zoom + centre."""
    centre = (size - 1) / 2
    coords = centre + (np.arange(size) - centre) / zoom
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, size - 1)
    weight = coords - low
    matrix = np.zeros((size, size), dtype=np.float32)
    matrix[np.arange(size), low] += 1 - weight
    matrix[np.arange(size), high] += weight
    return matrix


def _window_matrix(size: int, window: int) -> np.ndarray:
    """Row o sums pixels o .. o+window-1: W x W^T gives every shifted window's sum at once."""
    span = size - window + 1
    matrix = np.zeros((span, size), dtype=np.float32)
    for offset in range(span):
        matrix[offset, offset : offset + window] = 1
    return matrix


def _sandwich(images: np.ndarray, left: np.ndarray) -> np.ndarray:
    """left @ image @ left.T for a whole stack (all the filters are separable), in cache-sized chunks."""
    count, size = len(images), images.shape[-1]
    out = left.shape[0]
    result = np.empty((count, out, out), dtype=np.float32)
    for start in range(0, count, 2048):
        chunk = images[start : start + 2048]
        rows = (chunk.reshape(-1, size) @ left.T).reshape(len(chunk), size, out)
        both = np.ascontiguousarray(rows.transpose(0, 2, 1)).reshape(-1, size) @ left.T
        result[start : start + 2048] = both.reshape(len(chunk), out, out).transpose(0, 2, 1)
    return result


def _content_mask(images: np.ndarray, flat: float = 3.0) -> np.ndarray:
    """0 on flat border bars (letterboxing, frames) and the edge next to them, 1 elsewhere.

    Two unrelated letterboxed photos share the bars' straight edges, which dominate a high-passed
    correlation (the most common false match seen on CIFAR-10); masking them leaves only the picture.
    """
    size = images.shape[-1]
    ones = np.full(size, 1 / size, dtype=np.float32)

    def spread(values: np.ndarray) -> np.ndarray:  # standard deviation along the last axis, by matrix products
        mean, square = values @ ones, (values * values) @ ones
        return np.sqrt(np.maximum(square - mean * mean, 0))

    flat_rows = spread(images) < flat  # (n, size)
    flat_cols = spread(images.transpose(0, 2, 1)) < flat

    def bars(flags: np.ndarray) -> np.ndarray:
        # only runs of flat lines that touch the border are bars; grow them by one line (their edge)
        size = flags.shape[1]
        from_start = np.cumprod(flags, axis=1).astype(bool)
        from_end = np.cumprod(flags[:, ::-1], axis=1)[:, ::-1].astype(bool)
        bar = from_start | from_end
        grown = bar.copy()
        grown[:, 1:] |= bar[:, :-1]
        grown[:, :-1] |= bar[:, 1:]
        grown[:, [0, size - 1]] |= bar[:, [0, size - 1]]
        return grown

    keep_rows = ~bars(flat_rows)
    keep_cols = ~bars(flat_cols)
    return (keep_rows[:, :, None] & keep_cols[:, None, :]).astype(np.float32)


class Prepared:
    """Per-image arrays for verification at one size, computed once per image, not once per pair.

    For the image and its zoomed version: the high-passed image, and for every shifted window its sum and
    the norm of its deviations from its mean; for the centre window (the fixed side of a comparison) its
    mean and norm. A pair then costs only the dot products. Every filter is linear and separable, so each
    is a matrix sandwich over the whole stack. (The normalised centre windows are not stored: on this
    machine fresh memory costs about as much as the arithmetic, and the dot products need only the stats.)
    """

    def __init__(
        self, thumbs: np.ndarray, size: int, threads: int = 1, zoom: bool = True, rows: np.ndarray | None = None
    ) -> None:
        """`zoom=False`: the zoomed versions are left out until add_zoom() asks for some of them. `rows`: the stack
        is thumbs[rows], read chunk by chunk (a copy of a million thumbnails would cost a gigabyte)."""
        self.shift = 1  # one pixel each way at 16 and at 32: as discriminative as two at 32, 3x cheaper
        self.window = size - 2 * self.shift
        self.size = size
        self.thumbs, self.rows = thumbs, rows
        count, span = len(thumbs) if rows is None else len(rows), 2 * self.shift + 1
        # written chunk by chunk in place: concatenating the parts afterwards cost more than computing them
        self.plain = np.empty((count, size, size), dtype=np.float32)
        self.zoom = np.zeros((count, size, size), dtype=np.float32)  # untouched pages cost nothing until used
        # per version (plain, zoom): window sums, window norms (n, span, span); centre mean and norm (n,)
        self.sums = np.zeros((2, count, span, span), dtype=np.float32)
        self.norms = np.ones((2, count, span, span), dtype=np.float32)

        def fill(lo: int, hi: int) -> None:
            small = self._small(self._images(slice(lo, hi)))
            self.plain[lo:hi] = self._high_pass(small, None)
            self.sums[0, lo:hi], self.norms[0, lo:hi] = self._window_stats(self.plain[lo:hi])

        self._map(fill, count, threads)
        centre = self.shift * span + self.shift
        self.centre_mean = self.sums[0].reshape(count, -1)[:, centre] / (self.window * self.window)
        self.centre_norm = self.norms[0].reshape(count, -1)[:, centre]
        if zoom:
            self.add_zoom(np.arange(count), threads)

    def add_zoom(self, rows: np.ndarray, threads: int = 1) -> None:
        """Compute the zoomed versions of these images (indices into the stack)."""
        rows = np.asarray(rows)

        def fill(lo: int, hi: int) -> None:
            part = rows[lo:hi]
            self.zoom[part] = zoomed = self._high_pass(self._small(self._images(part)), _zoom_matrix(self.size, ZOOM))
            self.sums[1, part], self.norms[1, part] = self._window_stats(zoomed)

        self._map(fill, len(rows), threads)

    def _images(self, part: slice | np.ndarray) -> np.ndarray:
        """The thumbnails of these rows of the stack."""
        return self.thumbs[part] if self.rows is None else self.thumbs[self.rows[part]]

    def _map(self, function, count: int, threads: int) -> None:
        _map_chunks(function, count, max(256, _CHUNK_BYTES // (4 * self.size * self.size)), threads)

    def _small(self, thumbs: np.ndarray) -> np.ndarray:
        size = self.size
        if size == THUMB_SIZE:
            return np.ascontiguousarray(thumbs, dtype=np.float32)
        # block means by strided integer sums first: the filters then run on the small image
        factor = THUMB_SIZE // size
        columns = sum(thumbs[:, :, k::factor].astype(np.uint16) for k in range(factor))
        blocks = sum(columns[:, k::factor] for k in range(factor))
        return blocks.astype(np.float32) * np.float32(1 / (factor * factor))

    def _high_pass(self, small: np.ndarray, zoom: np.ndarray | None) -> np.ndarray:
        """Image (zoomed first when `zoom`, a resampling matrix) minus its blur, flat bars masked out."""
        blur = _blur_matrix(self.size, sigma=3.0 * self.size / THUMB_SIZE)
        if zoom is None:
            return (small - _sandwich(small, blur)) * _content_mask(small)
        small_zoom = _sandwich(small, zoom)
        return (small_zoom - _sandwich(small, blur @ zoom)) * _content_mask(small_zoom)

    def _window_stats(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sum and sqrt(sum (x - mean)^2) of every shifted window."""
        w = self.window

        windows = _window_matrix(self.size, w)  # (span, size): row k sums pixels k .. k+w-1

        def window_sums(values: np.ndarray) -> np.ndarray:  # (n, span, span), as matrix products (BLAS)
            return _sandwich(values, windows)

        sums, squares = window_sums(images), window_sums(images * images)
        # high-passed images have a mean near 0, so this difference loses no precision in float32
        return sums, np.sqrt(np.maximum(squares - sums**2 / (w * w), 0)) + 1e-6

    def scores(
        self,
        first: np.ndarray,
        second: np.ndarray,
        threads: int = 1,
        alignment: bool = False,
        variants: tuple[int, ...] = (0, 1, 2),
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Best correlation of each pair over shifts, plain and with either image zoomed.

        With `alignment`, also where it was found: variant * 9 + dy * 3 + dx (variant 0 plain, 1 the second
        image zoomed, 2 the first image zoomed), the starting point of `refine`. `variants`: which to try."""
        best = np.full(len(first), -1.0, dtype=np.float32)
        where = np.zeros(len(first), dtype=np.int8)

        def run(lo: int, hi: int) -> None:
            best[lo:hi], where[lo:hi] = self._score_chunk(first[lo:hi], second[lo:hi], variants)

        _map_chunks(run, len(first), max(256, _CHUNK_BYTES // (4 * self.size * self.size)), threads)
        return (best, where) if alignment else best

    def _score_chunk(self, a: np.ndarray, b: np.ndarray, variants: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        s, w = self.shift, self.window
        span = 2 * s + 1
        result = np.full(len(a), -1.0, dtype=np.float32)
        where = np.zeros(len(a), dtype=np.int8)
        sides = {
            0: lambda: (self.plain[a], self.plain[b], 0, b),
            1: lambda: (self.plain[a], self.zoom[b], 1, b),
            2: lambda: (self.plain[b], self.zoom[a], 1, a),
        }
        for variant in variants:
            fixed, moving, version, f = sides[variant]()
            fixed_index = b if variant == 2 else a
            centre = fixed[:, s : s + w, s : s + w]
            mean, norm = self.centre_mean[fixed_index], self.centre_norm[fixed_index]
            sums, norms = self.sums[version, f], self.norms[version, f]
            for dy in range(span):
                for dx in range(span):
                    # sum (c - mean_c)(m - mean_m) = sum c*m - mean_c * sum m  (the other terms cancel)
                    dots = np.einsum("nij,nij->n", centre, moving[:, dy : dy + w, dx : dx + w])
                    dots = (dots - mean * sums[:, dy, dx]) / (norm * norms[:, dy, dx])
                    better = dots > result
                    result[better] = dots[better]
                    where[better] = variant * span * span + dy * span + dx
        return result, where


# The refinement: the 3x3 shifts and two zooms above find the rough alignment of a pair; a true copy then
# correlates far better once aligned to half a pixel and 5% in scale, while two different photos of similar
# scenes (ships on a horizon, planes against the sky: the false matches seen on CIFAR-10) gain little.
_REFINE_WINDOW = 24  # the central 24x24 of the fixed image: borders are where crops and rescales differ most
_REFINE_STEPS = (-0.5, 0.0, 0.5)  # shift steps, pixels
_REFINE_ZOOMS = (1 / 1.06, 1.0, 1.06)  # zoom steps around the rough zoom, per axis


def _resample_rows(zoom: np.ndarray, shift: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """Bilinear sampling matrices (..., window, size): output row o reads the input at c + (o + shift - c) / zoom."""
    centre = (size - 1) / 2
    start = (size - _REFINE_WINDOW) // 2
    out = np.arange(start, start + _REFINE_WINDOW, dtype=np.float32)
    coords = centre + (out + shift[..., None] - centre) / zoom[..., None]
    coords = np.clip(coords, 0, size - 1)
    low = np.minimum(np.floor(coords).astype(np.int64), size - 2)
    weight = (coords - low).astype(np.float32)
    matrix = np.zeros((*coords.shape, size), dtype=np.float32)
    np.put_along_axis(matrix, low[..., None], (1 - weight)[..., None], axis=-1)
    np.put_along_axis(matrix, low[..., None] + 1, weight[..., None], axis=-1)
    return matrix


def refine(prepared: Prepared, first: np.ndarray, second: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Correlation of each pair after a local search around its rough alignment `where` (from scores()):
    on each axis separately, shifts of -0.5, 0 and +0.5 px and zooms of 1/1.06, 1 and 1.06 around it (so
    the aspect ratio may change too: CIFAR-style copies are often re-cropped to another aspect), on the
    central window of the fixed image. `prepared` must be at full size (THUMB_SIZE)."""
    scores = np.full(len(first), -1.0, dtype=np.float32)
    for lo in range(0, len(first), 64):  # ~180 KB of temporaries per pair: small chunks keep them in warm pages
        hi = min(lo + 64, len(first))
        scores[lo:hi] = _refine_chunk(prepared, first[lo:hi], second[lo:hi], where[lo:hi])
    return scores


_GRID: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def _axis_grids() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every axis's option matrices, by start (zoomed or not, shift -1/0/+1): only 6 starts exist, so the
    matrices, their column sums and their Gram matrices are made once, not per pair.

    Returns (matrices (2, 3, options, window, THUMB_SIZE), sums (2, 3, options, THUMB_SIZE), grams (2, 3, options,
    THUMB_SIZE * THUMB_SIZE))."""
    global _GRID
    if _GRID is None:
        starts = np.array([1.0, ZOOM], np.float32)[:, None, None, None]
        zooms = starts * np.asarray(_REFINE_ZOOMS, np.float32)[None, None, :, None]
        shifts = np.arange(-1, 2, dtype=np.float32)[None, :, None, None] + np.asarray(_REFINE_STEPS, np.float32)
        zooms, shifts = np.broadcast_arrays(zooms, shifts)  # (2, 3, zoom steps, shift steps)
        matrices = _resample_rows(zooms.reshape(2, 3, -1), shifts.reshape(2, 3, -1))
        grams = np.matmul(matrices.transpose(0, 1, 2, 4, 3), matrices).reshape(*matrices.shape[:3], -1)
        _GRID = (matrices, matrices.sum(axis=3), grams)
    return _GRID


def _refine_chunk(prepared: Prepared, first: np.ndarray, second: np.ndarray, where: np.ndarray) -> np.ndarray:
    span = 2 * prepared.shift + 1
    variant, dy, dx = where // (span * span), (where // span) % span, where % span
    swap = variant == 2  # the first image was the zoomed one: make it the moving side
    fixed_index, moving_index = np.where(swap, second, first), np.where(swap, first, second)
    zoomed = (variant != 0).astype(np.int64)
    lo = (THUMB_SIZE - _REFINE_WINDOW) // 2
    fixed = prepared.plain[fixed_index][:, lo : lo + _REFINE_WINDOW, lo : lo + _REFINE_WINDOW]
    fixed = fixed - fixed.mean(axis=(1, 2), keepdims=True)
    fixed /= np.sqrt(np.einsum("nij,nij->n", fixed, fixed))[:, None, None] + 1e-6
    moving = prepared.plain[moving_index]
    matrices, matrix_sums, matrix_grams = _axis_grids()
    rows = matrices[zoomed, dy]  # (n, options, window, size): the row options around each pair's start
    cols = matrices[zoomed, dx]
    count, options, window = len(first), rows.shape[1], _REFINE_WINDOW
    # The window for row option r and column option c is W = R_r M C_c^T. Every (r, c) at once, without
    # forming the 81 windows: <F, W> = <F C_c, R_r M>, sum W = (1^T R_r M)(C_c^T 1) and
    # |W|^2 = <(R_r M)^T (R_r M), C_c^T C_c>, each a batch of small matrix products.
    sampled = np.matmul(rows.reshape(count, options * window, THUMB_SIZE), moving).reshape(
        count, options, window, THUMB_SIZE
    )
    fixed_cols = np.matmul(fixed[:, None], cols)  # F C_c: (n, options, window, size)
    flat = window * THUMB_SIZE
    dots = np.matmul(sampled.reshape(count, options, flat), fixed_cols.reshape(count, options, flat).transpose(0, 2, 1))
    sums = np.matmul(sampled.sum(axis=2), matrix_sums[zoomed, dx].transpose(0, 2, 1))
    grams = np.matmul(sampled.transpose(0, 1, 3, 2), sampled).reshape(count, options, THUMB_SIZE * THUMB_SIZE)
    squares = np.matmul(grams, matrix_grams[zoomed, dx].transpose(0, 2, 1))
    norms = np.sqrt(np.maximum(squares - sums**2 / (window * window), 0)) + 1e-6
    return (dots / norms).reshape(count, -1).max(axis=1)


# The wide search: copies re-cropped by more than the rough search covers (CIFAR-style copies shifted by 2-3 px or
# cropped by 15-30%, seen among ciFAIR's pairs scoring 0.45-0.84 above) align once the moving image is zoomed up to
# 1.34x and shifted up to 3 px, each axis on its own. Tried both ways round (either image may be the crop).
_WIDE_ZOOMS = (1.0, 1.1, 1.2, 1.3)
_WIDE_SHIFTS = (-3.0, -1.5, 0.0, 1.5, 3.0)
_WIDE: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def _wide_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-axis option matrices of the wide search: (options, window, THUMB_SIZE), their column sums and Grams."""
    global _WIDE
    if _WIDE is None:
        zooms, shifts = np.meshgrid(np.asarray(_WIDE_ZOOMS, np.float32), np.asarray(_WIDE_SHIFTS, np.float32))
        matrices = _resample_rows(zooms.reshape(-1), shifts.reshape(-1))
        grams = np.matmul(matrices.transpose(0, 2, 1), matrices).reshape(len(matrices), -1)
        _WIDE = (matrices, matrices.sum(axis=1), grams)
    return _WIDE


def wide(prepared: Prepared, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Best correlation of each pair over the wide grid of per-axis zooms and shifts, either image moving, on the
    central window of the other. `prepared` must be at full size (THUMB_SIZE)."""
    scores = np.full(len(first), -1.0, dtype=np.float32)
    for lo in range(0, len(first), 32):  # ~0.5 MB of temporaries per pair
        hi = min(lo + 32, len(first))
        one_way = _wide_chunk(prepared, first[lo:hi], second[lo:hi])
        scores[lo:hi] = np.maximum(one_way, _wide_chunk(prepared, second[lo:hi], first[lo:hi]))
    return scores


def _wide_chunk(prepared: Prepared, fixed_index: np.ndarray, moving_index: np.ndarray) -> np.ndarray:
    """As _refine_chunk, with one grid of options for every pair: <F, R_r M C_c^T> and the window statistics for
    every row option r and column option c, by batches of small matrix products."""
    matrices, matrix_sums, matrix_grams = _wide_grid()
    lo = (THUMB_SIZE - _REFINE_WINDOW) // 2
    fixed = prepared.plain[fixed_index][:, lo : lo + _REFINE_WINDOW, lo : lo + _REFINE_WINDOW]
    fixed = fixed - fixed.mean(axis=(1, 2), keepdims=True)
    fixed /= np.sqrt(np.einsum("nij,nij->n", fixed, fixed))[:, None, None] + 1e-6
    moving = prepared.plain[moving_index]
    count, options, window = len(fixed_index), len(matrices), _REFINE_WINDOW
    sampled = np.matmul(matrices[None], moving[:, None])  # R_r M: (n, options, window, size)
    fixed_cols = np.matmul(fixed[:, None], matrices)  # F C_c: (n, options, window, size)
    flat = window * THUMB_SIZE
    dots = np.matmul(sampled.reshape(count, options, flat), fixed_cols.reshape(count, options, flat).transpose(0, 2, 1))
    sums = np.matmul(sampled.sum(axis=2), matrix_sums.T)
    grams = np.matmul(sampled.transpose(0, 1, 3, 2), sampled).reshape(count * options, THUMB_SIZE * THUMB_SIZE)
    squares = (grams @ matrix_grams.T).reshape(count, options, options)  # one product: batched ones are slow here
    norms = np.sqrt(np.maximum(squares - sums**2 / (window * window), 0)) + 1e-6
    return (dots / norms).reshape(count, -1).max(axis=1)


def _map_chunks(function, total: int, chunk: int, threads: int) -> list:
    """function(lo, hi) over consecutive ranges, in `threads` threads (numpy releases the GIL here)."""
    ranges = [(lo, min(lo + chunk, total)) for lo in range(0, total, chunk)]
    if threads <= 1 or len(ranges) <= 1:
        return [function(lo, hi) for lo, hi in ranges]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda bounds: function(*bounds), ranges))


def similarity(thumbs_a: np.ndarray, thumbs_b: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """Score of each pair of 32x32 thumbs (1 = the same picture): high-passed, shifted, zoomed correlation."""
    prepared = Prepared(np.concatenate([thumbs_a, thumbs_b]), size)
    index = np.arange(len(thumbs_a))
    return prepared.scores(index, index + len(thumbs_a))


def transform_codes(flips: bool, rotations: bool) -> tuple[int, ...]:
    """The transforms a scan tries on the second image of a pair, as codes (model.TRANSFORMS[code - 1])."""
    codes = [1] if flips else []
    if rotations:
        codes += [2, 3, 4] + ([5, 6, 7] if flips else [])  # with --flips, every rotation of the mirror too
    return tuple(codes)


def transformed(images: np.ndarray, code: int) -> np.ndarray:
    """Images (..., H, W) under a transform code: 0 none, 1 mirrored left-right, 2-4 rotated by 90, 180, 270 degrees
    (counter-clockwise), 5-7 mirrored then rotated (6, mirrored and rotated by 180, is the vertical flip)."""
    if code == 1 or code >= 5:
        images = images[..., ::-1]
    turns = (0, 0, 1, 2, 3, 1, 2, 3)[code]
    return np.ascontiguousarray(np.rot90(images, turns, axes=(-2, -1)) if turns else images)


def verify(
    thumbs: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    mirrored: np.ndarray,
    settings: CascadeSettings,
    threads: int = 1,
    groups_only: bool = False,
) -> np.ndarray:
    """The score of each candidate pair (-1 for pairs dropped by the coarse pass). `mirrored`: per pair, True (or a
    transform code, see `transformed`) compares the first image with the mirrored (transformed) second.

    `groups_only`: skip the refinement of a pair whose two images are already joined by verified pairs (its
    score stays the unrefined one, below min_similarity): the groups come out the same, for less work when
    copies come in large clusters."""
    scores = np.full(len(first), -1.0, dtype=np.float32)
    if not len(first):
        return scores
    from threadpoolctl import threadpool_limits

    # Thousands of tiny matrix products: BLAS threads only add synchronisation (measured slower:
    # docs/performance.md), so this stage runs them single-threaded.
    with threadpool_limits(limits=1, user_api="blas"):
        return _verify(thumbs, first, second, mirrored, settings, scores, threads, groups_only)


def _verify(thumbs, first, second, mirrored, settings, scores, threads, groups_only):
    second = second.copy()
    codes = np.asarray(mirrored).astype(np.int64)
    if codes.any():
        # mirrored (rotated) images join the stack as extra rows, so every comparison below stays a plain one
        extra, rows = [thumbs], len(thumbs)
        for code in np.unique(codes[codes > 0]).tolist():
            chosen = codes == code
            images = np.unique(second[chosen])
            second[chosen] = rows + np.searchsorted(images, second[chosen])
            extra.append(transformed(thumbs[images], code))
            rows += len(images)
        thumbs = np.concatenate(extra)
    involved, inverse = np.unique(np.concatenate([first, second]), return_inverse=True)
    local_first, local_second = inverse[: len(first)], inverse[len(first) :]
    small = Prepared(thumbs, THUMB_SIZE // 2, threads, zoom=False, rows=involved)
    coarse = small.scores(local_first, local_second, threads, variants=(0,))
    # the zoomed comparisons only where they can matter: no verified CIFAR-10 pair scores below 0.35 unzoomed
    maybe = np.nonzero((coarse < settings.min_coarse) & (coarse >= settings.min_coarse - 0.25))[0]
    if len(maybe):
        small.add_zoom(np.unique(np.concatenate([local_first[maybe], local_second[maybe]])), threads)
        zoomed = small.scores(local_first[maybe], local_second[maybe], threads, variants=(1, 2))
        coarse[maybe] = np.maximum(coarse[maybe], zoomed)
    del small  # its pages go back before the 32x32 stage allocates (fresh memory is what costs here)
    survivors = np.nonzero(coarse >= settings.min_coarse)[0]
    if len(survivors):
        kept, kept_inverse = np.unique(
            np.concatenate([local_first[survivors], local_second[survivors]]), return_inverse=True
        )
        fine = Prepared(thumbs, THUMB_SIZE, threads, rows=involved[kept])
        fine_first, fine_second = kept_inverse[: len(survivors)], kept_inverse[len(survivors) :]
        fine_scores, where = fine.scores(fine_first, fine_second, threads, alignment=True)
        scores[survivors] = fine_scores
        # pairs in the uncertain band get the sub-pixel search; its score replaces the rough one when higher
        band = np.nonzero((fine_scores >= settings.refine_from) & (fine_scores < settings.min_similarity))[0]
        if len(band):
            refine_band = _refine_joining if groups_only else _refine_all
            refined = refine_band(fine, fine_first, fine_second, where, band, fine_scores, settings, threads)
            fine_scores[band] = np.maximum(fine_scores[band], refined)
        # pairs still short of min_similarity get the wide search; its score replaces theirs when higher
        wide_band = np.nonzero((fine_scores >= settings.wide_from) & (fine_scores < settings.min_similarity))[0]
        if len(wide_band):
            widen = _wide_joining if groups_only else _wide_all
            fine_scores[wide_band] = np.maximum(
                fine_scores[wide_band], widen(fine, fine_first, fine_second, wide_band, fine_scores, settings, threads)
            )
        scores[survivors] = fine_scores
    return scores


def _wide_all(fine, first, second, band, fine_scores, settings, threads) -> np.ndarray:
    widened = np.empty(len(band), dtype=np.float32)

    def run(lo: int, hi: int) -> None:
        part = band[lo:hi]
        widened[lo:hi] = wide(fine, first[part], second[part]) - settings.wide_penalty

    _map_chunks(run, len(band), 128, threads)
    return widened


def _wide_joining(fine, first, second, band, fine_scores, settings, threads) -> np.ndarray:
    """The wide search, best first and a chunk at a time, only for the band pairs whose images are not yet joined
    (as _refine_joining)."""
    return _joining(
        fine,
        first,
        second,
        band,
        fine_scores,
        settings,
        lambda todo: _wide_all(fine, first, second, band[todo], fine_scores, settings, threads),
    )


def _refine_all(fine, first, second, where, band, fine_scores, settings, threads) -> np.ndarray:
    refined = np.empty(len(band), dtype=np.float32)

    def run(lo: int, hi: int) -> None:
        part = band[lo:hi]
        refined[lo:hi] = refine(fine, first[part], second[part], where[part])

    _map_chunks(run, len(band), 256, threads)
    return refined


def _refine_joining(fine, first, second, where, band, fine_scores, settings, threads) -> np.ndarray:
    """Refine, best first and a chunk at a time, only the band pairs whose images are not yet joined."""
    return _joining(
        fine,
        first,
        second,
        band,
        fine_scores,
        settings,
        lambda todo: _refine_all(fine, first, second, where, band[todo], fine_scores, settings, threads),
    )


def _joining(fine, first, second, band, fine_scores, settings, score) -> np.ndarray:
    """`score(todo)` (positions in `band`) for the band pairs, best first and a chunk at a time, only where the two
    images are not yet joined by accepted pairs; the others keep their score."""
    from .groups import UnionFind

    joined = UnionFind(len(fine.plain))
    accepted = fine_scores >= settings.min_similarity
    for a, b in zip(first[accepted].tolist(), second[accepted].tolist()):
        joined.union(a, b)
    result = fine_scores[band].copy()  # pairs left out keep their score
    order = np.argsort(-fine_scores[band], kind="stable")
    for lo in range(0, len(order), 1024):
        chunk = order[lo : lo + 1024]
        pairs = zip(first[band[chunk]].tolist(), second[band[chunk]].tolist())
        todo = chunk[[joined.find(a) != joined.find(b) for a, b in pairs]]
        if not len(todo):
            continue
        result[todo] = score(todo)
        for index in todo[result[todo] >= settings.min_similarity].tolist():
            joined.union(int(first[band[index]]), int(second[band[index]]))
    return result


def _neighbour_candidates(
    desc: np.ndarray, settings: CascadeSettings, threads: int | None, collect: dict | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """The pairs the neighbour searches propose (query_segments): each image's nearest neighbours, as is and with
    its descriptor half-shifted each way (one search for the four shifts). `collect` receives the raw lists side
    by side per image ("similarity", "found" (int32): (n, width), -1 and -inf where a list holds fewer)."""
    count = len(desc)
    firsts, seconds, sims, founds, routes = [], [], [], [], []
    index = search_index(desc, threads) if count >= 2 and query_segments(settings) else None  # built once
    for shift, k in query_segments(settings):
        if shift is not None and shift != HALF_SHIFTS[0]:
            continue  # the four shifts are searched together, below
        raw: dict = {}
        if shift is None:
            first, second = neighbour_pairs(
                desc, k, settings.min_descriptor_similarity, threads=threads, raw=raw, index=index
            )
            parts = 1
            if isinstance(index, ProbedLists):
                raw["routes"] = index.assigned[:, None]
        else:
            first, second = _shifted_pairs(desc, k, settings.min_descriptor_similarity, threads, raw, index)
            parts = len(HALF_SHIFTS)
        if "routes" in raw:
            routes.append(raw["routes"])
        firsts.append(first)
        seconds.append(second)
        if collect is not None:
            width = k + 1
            similarity = np.full((parts * count, width), -np.inf, dtype=np.float32)
            # int32: held through the verification, where the scan's memory peaks (48 MB less at a million)
            found = np.full((parts * count, width), -1, dtype=np.int32)
            if raw:
                similarity[:, : raw["similarity"].shape[1]] = raw["similarity"]
                found[:, : raw["found"].shape[1]] = raw["found"]
            # (parts * n, width) -> (n, parts * width): each image's lists side by side, shift by shift
            sims.append(similarity.reshape(parts, count, width).transpose(1, 0, 2).reshape(count, -1))
            founds.append(found.reshape(parts, count, width).transpose(1, 0, 2).reshape(count, -1))
    if collect is not None and sims:
        collect.update(similarity=np.concatenate(sims, axis=1), found=np.concatenate(founds, axis=1))
        if isinstance(index, ProbedLists) and len(routes) == len(sims):
            # each item's list per search (plain, then the half shifts), and the lists' centroids: lookup.py's
            # structures are then filled without routing a million vectors five times again
            collect.update(routes=np.concatenate(routes, axis=1), centroids=index.centroids())
    empty = np.empty(0, dtype=np.int64)
    return (np.concatenate(firsts) if firsts else empty), (np.concatenate(seconds) if seconds else empty), 0


def _shifted_pairs(
    desc: np.ndarray,
    k: int,
    min_similarity: float,
    threads: int | None,
    raw: dict,
    index,  # noqa: ANN001
) -> tuple[np.ndarray, np.ndarray]:
    """neighbour_pairs of the four half-shifted query sets, one after another, shift-major (the query i + s * n is
    item i shifted by HALF_SHIFTS[s]): one shift's queries in memory at a time (256 MB at a million images,
    where all four at once and their concatenation took 2 GB)."""
    count = len(desc)
    empty = np.empty(0, dtype=np.int64)
    if count < 2 or k <= 0:
        return empty, empty
    width = min(k + 1, count)
    similarity = np.empty((len(HALF_SHIFTS) * count, width), dtype=np.float32)
    found = np.empty((len(HALF_SHIFTS) * count, width), dtype=np.int64)
    probes = getattr(index, "nprobe", None)
    routed = isinstance(index, ProbedLists)
    routes = np.empty((count, len(HALF_SHIFTS)), dtype=np.int32) if routed else None
    if probes is not None:
        index.nprobe = _SHIFTED_PROBES
    try:
        for part, shift in enumerate(HALF_SHIFTS):
            rows = slice(part * count, (part + 1) * count)
            similarity[rows], found[rows] = nearest(desc, k, half_shifted(desc, shift), threads, index=index)
            if routes is not None:
                routes[:, part] = index.routes
    finally:
        if probes is not None:
            index.nprobe = probes
    raw.update(similarity=similarity, found=found)
    if routes is not None:
        raw["routes"] = routes
    items = np.tile(np.arange(count, dtype=np.int64), len(HALF_SHIFTS))
    return _listed_pairs(similarity, found, items, min_similarity)


@dataclass(frozen=True, slots=True)
class Candidates:
    """Candidate pairs and how they were proposed, with their verification scores."""

    first: np.ndarray
    second: np.ndarray
    transform: np.ndarray  # compare `first` with `second` under this transform code (0: as is; see `transformed`)
    scores: np.ndarray  # -1 where the coarse pass dropped the pair

    @property
    def mirrored(self) -> np.ndarray:
        return self.transform == 1


def candidate_pairs(
    hash_pairs: list[tuple[np.ndarray, np.ndarray, int]],
    thumbs: np.ndarray,
    flips: bool,
    settings: CascadeSettings,
    threads: int | None = None,
    progress=None,
    groups_only: bool = False,
    sums: np.ndarray | None = None,
    collect: dict | None = None,
    rotations: bool = False,
    score=None,
) -> Candidates:
    """The union of the hash pairs and the nearest-neighbour pairs, each unordered pair once, scored.

    `progress` (a ProgressSink, optional) advances once after the neighbour search and once after verification.
    `sums`: the thumbs' block_sums when already known (the fingerprint workers compute them).
    `collect`: when given, receives the descriptors ("desc": a function that makes them) and the raw neighbour
    search (the incremental index).
    `score`: verify's drop-in where the thumbnails live elsewhere (the cluster's workers; `thumbs` is None then and
    every descriptor comes from `sums`).
    """
    desc = descriptors(thumbs, sums)
    sources = list(hash_pairs)
    sources.append(_neighbour_candidates(desc, settings, threads, collect))
    if collect is not None:
        # made again when the state is written, not held through the verification, where a cold scan's memory
        # peaks (256 MB at a million); the same arrays, the same arithmetic: the same descriptors
        collect["desc"] = partial(descriptors, None, sums) if sums is not None else partial(descriptors, thumbs)
    for code in transform_codes(flips, rotations):
        # a 4x4 block maps onto a block under every transform: the transformed thumbs' block sums are the sums moved
        variant_desc = (
            descriptors(transformed(thumbs, code))
            if thumbs is not None
            else descriptors(sums=transformed(sums.reshape(-1, 8, 8), code).reshape(-1, 64))
        )
        query, found = neighbour_pairs(
            desc, settings.neighbours, settings.min_descriptor_similarity, queries=variant_desc, threads=threads
        )
        sources.append((found, query, code))  # found vs the transformed query
        del variant_desc
    count = len(desc)
    del desc
    firsts, seconds, flags = [], [], []
    for first, second, code in sources:
        if code:
            firsts.append(first)
            seconds.append(second)
        else:  # unordered: the smaller index first, so both directions collapse into one
            firsts.append(np.minimum(first, second))
            seconds.append(np.maximum(first, second))
        flags.append(np.full(len(first), int(code), dtype=np.int64))
    first, second, code = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(flags)
    # each (first, second, transform) once, as one integer key: np.unique over rows (axis=0) is much slower
    keys = np.unique((first.astype(np.int64) * count + second) * 8 + code)
    first, second, code = keys // 8 // count, keys // 8 % count, keys % 8
    if progress is not None:
        progress.advance()
    scores = (score or verify)(thumbs, first, second, code, settings, threads=threads or 1, groups_only=groups_only)
    if progress is not None:
        progress.advance()
    return Candidates(first, second, code, scores)
