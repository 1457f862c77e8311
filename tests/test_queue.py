import pytest
import torch
import torch.nn.functional as F
from distributed_testing import run_distributed
from torch.distributed import get_rank

from soco.modeling.queue import FeatureQueue


def _rows(start: int, count: int, dim: int = 3) -> torch.Tensor:
    values = torch.arange(start, start + count * dim, dtype=torch.float32).view(count, dim) + 1
    return F.normalize(values, dim=1)


def test_initial_state_is_random_unit_vectors_and_empty():
    queue = FeatureQueue(length=8, dim=4)
    assert queue.features.shape == (8, 4)
    torch.testing.assert_close(queue.features.norm(dim=1), torch.ones(8))
    assert int(queue.ptr) == 0 and not queue.is_full
    assert set(queue.state_dict()) == {"features", "ptr", "num_enqueued"}


def test_enqueue_writes_at_pointer_and_wraps_around():
    queue = FeatureQueue(length=6, dim=3)
    batches = [_rows(10 * i, 2) for i in range(4)]
    queue.enqueue(batches[0])
    torch.testing.assert_close(queue.features[0:2], batches[0])
    assert int(queue.ptr) == 2
    queue.enqueue(batches[1])
    assert not queue.is_full
    queue.enqueue(batches[2])
    assert int(queue.ptr) == 0 and queue.is_full
    queue.enqueue(batches[3])  # overwrites the oldest batch
    torch.testing.assert_close(queue.features, torch.cat([batches[3], batches[1], batches[2]]))
    assert int(queue.ptr) == 2 and int(queue.num_enqueued) == 8


def test_length_must_be_a_multiple_of_the_batch():
    queue = FeatureQueue(length=6, dim=3)
    with pytest.raises(ValueError, match="not a multiple of the global batch 4"):
        queue.enqueue(_rows(0, 4))
    with pytest.raises(ValueError, match="length > 0"):
        FeatureQueue(length=0, dim=3)


def test_state_dict_round_trip_restores_pointer_and_contents():
    queue = FeatureQueue(length=4, dim=3)
    queue.enqueue(_rows(0, 2))
    restored = FeatureQueue(length=4, dim=3)
    restored.load_state_dict(queue.state_dict())
    restored.enqueue(_rows(50, 2))
    torch.testing.assert_close(restored.features, torch.cat([_rows(0, 2), _rows(50, 2)]))
    assert restored.is_full


def _check_two_process_enqueue() -> None:
    queue = FeatureQueue(length=8, dim=3)
    queue.enqueue(_rows(100 * get_rank(), 2))
    # every process holds the global batch, in rank order
    torch.testing.assert_close(queue.features[:4], torch.cat([_rows(0, 2), _rows(100, 2)]))
    assert int(queue.ptr) == 4 and int(queue.num_enqueued) == 4
    with pytest.raises(ValueError, match="global batch 4"):
        FeatureQueue(length=6, dim=3).enqueue(_rows(0, 2))


def test_enqueue_across_two_processes(tmp_path):
    run_distributed(_check_two_process_enqueue, tmp_path)


def test_initial_contents_do_not_depend_on_the_process_seed():
    torch.manual_seed(1)
    first = FeatureQueue(length=8, dim=4)
    torch.manual_seed(2)
    second = FeatureQueue(length=8, dim=4)
    torch.testing.assert_close(first.features, second.features)
