"""inputs/scaling.py: standardization fitted on the training rows only."""
import numpy as np
import pytest

from inputs.scaling import Standardizer

# --------------------------------------------------------------------------
# Standardizer
# --------------------------------------------------------------------------

def test_standardizer_uses_train_statistics_only():
    train = np.array([[1, 10], [3, 20], [5, 60]], dtype=np.float32)
    test = np.array([[2, 0], [100, -5]], dtype=np.float32)
    scaler = Standardizer().fit(train)

    # Hand-computed from the training set (population std, ddof=0).
    mean = np.array([3.0, 30.0])
    std = np.array([np.sqrt(8 / 3), np.sqrt(((10 - 30) ** 2 + (20 - 30) ** 2 + (60 - 30) ** 2) / 3)])
    np.testing.assert_allclose(scaler.mean_, mean)
    np.testing.assert_allclose(scaler.std_, std)

    out = scaler.transform(test)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (test - mean) / std, rtol=1e-6)
    # Transforming the test set must not refit: statistics are unchanged.
    np.testing.assert_allclose(scaler.mean_, mean)
    # And the result differs from what test-set statistics would give.
    assert not np.allclose(out, Standardizer().fit(test).transform(test))
    # The training set itself comes out with mean 0, std 1.
    z = scaler.transform(train)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 5.0, 0.1, -3.3e-7, 1e30])
def test_standardizer_constant_column(value):
    train = np.column_stack([np.full(7, value), np.arange(7)]).astype(np.float32)
    scaler = Standardizer().fit(train)
    assert scaler.std_[0] == 1.0
    out = scaler.transform(train)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 0], 0, atol=1e-6 * max(1, abs(value)))
    test = np.array([[value + 2, 3]], dtype=np.float32)
    assert np.isfinite(scaler.transform(test)).all()


def test_standardizer_misuse():
    with pytest.raises(RuntimeError):
        Standardizer().transform(np.zeros((1, 2)))
    with pytest.raises(ValueError):
        Standardizer().fit(np.zeros((0, 2)))
    with pytest.raises(ValueError):
        Standardizer().fit(np.zeros((3, 2))).transform(np.zeros((3, 3)))


