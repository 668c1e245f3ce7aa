import pytest

from lpl_theory.task import FIGURES, GaussianTask, Perturbation, figure_spec, type_sign


def test_type_signs():
    assert type_sign("first") == 1
    assert type_sign("second") == -1
    with pytest.raises(ValueError, match="third"):
        type_sign("third")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"gamma": 0.0, "d": 2, "eta": 1.0}, ValueError, "gamma.*> 0.*0.0"),
        ({"gamma": -1.0, "d": 2, "eta": 1.0}, ValueError, "gamma"),
        ({"gamma": 2.0, "d": 0, "eta": 1.0}, ValueError, "d .*>= 1.*0"),
        ({"gamma": 2.0, "d": 1.5, "eta": 1.0}, TypeError, "d .*integer"),
        ({"gamma": 2.0, "d": 2, "eta": 0.0}, ValueError, "eta"),
        ({"gamma": 2.0, "d": 2, "eta": 1.0, "sigma": -1.0}, ValueError, "sigma"),
        # sigma = 0 is the edge: a degenerate class law, refused like a negative one
        ({"gamma": 2.0, "d": 2, "eta": 1.0, "sigma": 0.0}, ValueError, "sigma .*> 0.*0.0"),
        ({"gamma": 2.0, "d": 2, "eta": 1.0, "K": 0.9}, ValueError, "K .*>= 1.*0.9"),
        ({"gamma": "2", "d": 2, "eta": 1.0}, TypeError, "gamma"),
        # a bool is not a number here (True would read as Gamma = 1)
        ({"gamma": True, "d": 2, "eta": 1.0}, TypeError, "gamma must be a real number"),
        ({"gamma": 2.0, "d": 2, "eta": 1.0, "K": True}, TypeError, "K must be a real number"),
        # nor a dimension: True read as d = 1 (np.True_ was refused, True was not)
        ({"gamma": 2.0, "d": True, "eta": 1.0}, TypeError, "d .*integer.*True"),
        ({"gamma": 2.0, "d": False, "eta": 1.0}, TypeError, "d .*integer.*False"),
        ({"gamma": float("nan"), "d": 2, "eta": 1.0}, ValueError, "gamma.*finite"),
    ],
)
def test_task_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        GaussianTask(**kwargs)


def test_task_integral_float_dimension_is_accepted():
    assert GaussianTask(2.0, 3.0, 1.0).d == 3
    t = GaussianTask(2.0, 2, 1.0, 0.5, 3.0)
    assert t.sigma_plus == 0.5 and t.sigma_minus == 1.5


def test_perturbation_validation_and_range():
    with pytest.raises(ValueError, match="eps"):
        Perturbation(-0.1)
    with pytest.raises(ValueError, match="type_minus"):
        Perturbation(0.1, 1.0, 1.0, "first", "both")
    with pytest.raises(ValueError, match="type_plus"):
        Perturbation(0.1, 1.0, 1.0, "both", "first")
    p = Perturbation(0.2, 5.0, 1.0)
    assert p.eps_plus == pytest.approx(1.0) and p.eps_minus == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"rho_plus \* eps must be < eta"):
        p.check_against(GaussianTask(2.0, 2, 1.0))
    Perturbation(0.2, 4.99, 1.0).check_against(GaussianTask(2.0, 2, 1.0))


def test_figure_parameters_are_the_papers():
    f3, f4, f5, f6 = (FIGURES[n] for n in (3, 4, 5, 6))
    assert (f3.task.gamma, f3.task.d, f3.task.eta, f3.eps, f3.task.sigma, f3.task.K) == (
        2,
        2,
        1,
        0.2,
        1,
        1,
    )
    assert (f3.vary, f3.type_plus, f3.type_minus, f3.fixed_rho) == ("rho_plus", "first", "first", 1)
    assert (f4.vary, f4.type_plus, f4.type_minus, f4.fixed_rho) == (
        "rho_minus",
        "first",
        "second",
        1,
    )
    assert (f5.task.K, f5.task.gamma, f5.task.d, f5.task.eta, f5.eps, f5.task.sigma) == (
        3,
        3.5,
        2,
        1,
        0.1,
        1,
    )
    assert (f6.task.K, f6.task.gamma, f6.task.d, f6.task.eta, f6.eps, f6.task.sigma) == (
        2.5,
        1.1,
        2,
        1,
        0.2,
        1,
    )
    assert f5.vary == "rho_plus" and f6.vary == "rho_minus"
    assert f5.rho_max == pytest.approx(10.0) and f3.rho_max == pytest.approx(5.0)
    with pytest.raises(ValueError, match="figure must be one of"):
        figure_spec(7)


@pytest.mark.parametrize("number", [3, 4, 5, 6])
def test_figure_perturbation_varies_the_named_rho(number):
    """The varied rho goes to the class the figure names (rho_+ in Figs. 3 and 5, rho_- in Figs. 4 and 6),
    the other class keeps the fixed rho = 1, and both types are the figure's."""
    spec = FIGURES[number]
    p = spec.perturbation(2.5)
    varied, fixed = (p.rho_plus, p.rho_minus) if number in (3, 5) else (p.rho_minus, p.rho_plus)
    assert (varied, fixed) == (2.5, 1.0)
    assert (p.eps, p.type_plus, p.type_minus) == (
        spec.eps,
        "first",
        "second" if number == 4 else "first",
    )


@pytest.mark.parametrize("number", [3.0, True, "3"])
def test_figure_spec_refuses_a_non_integer(number):
    with pytest.raises(TypeError, match="figure must be an integer"):
        figure_spec(number)
