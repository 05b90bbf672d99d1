"""Batches of in-memory images for a model: consecutive images of one size, stacked together."""

from collections.abc import Iterator, Sequence


def same_size_runs(shapes: Sequence[tuple[int, ...]], batch_size: int) -> Iterator[tuple[int, int]]:
    """[i, j) runs of consecutive items whose shapes are equal, at most `batch_size` long."""
    i = 0
    while i < len(shapes):
        j = i + 1
        while j < len(shapes) and j - i < batch_size and shapes[j] == shapes[i]:
            j += 1
        yield i, j
        i = j
