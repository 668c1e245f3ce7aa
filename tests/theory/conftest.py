import numpy as np
import pytest

TYPE_PAIRS = [("first", "first"), ("first", "second"), ("second", "first"), ("second", "second")]


@pytest.fixture(scope="session")
def random_points():
    """Random parameter points (K = 1 and K > 1) with rho * eps < eta."""
    rng = np.random.default_rng(1234)
    pts = []
    for i in range(24):
        eta = float(rng.uniform(0.3, 2.0))
        eps = float(rng.uniform(0.02, 0.9) * eta)
        pts.append(
            {
                "gamma": float(np.exp(rng.uniform(-1.0, 2.5))),
                "d": int(rng.integers(1, 6)),
                "eta": eta,
                "sigma": float(rng.uniform(0.4, 2.0)),
                "K": 1.0 if i % 2 == 0 else float(rng.uniform(1.05, 4.0)),
                "eps": eps,
                "rho_plus": float(rng.uniform(0.0, 0.99) * eta / eps),
                "rho_minus": float(rng.uniform(0.0, 0.99) * eta / eps),
            }
        )
    return pts
