import numpy as np
import pytest

from clipper_deploy_core import ClipperException
from clipper_deploy_core.inputs import InputError, canonical_input_type, to_batch, validate_input
from clipper_deploy_core.naming import name_from_function, validate_name, validate_version


@pytest.mark.parametrize("alias,canonical", [
    ("ints", "integers"), ("I", "integers"), ("d", "doubles"), ("Double", "doubles"), ("f", "floats"),
    ("strs", "strings"), ("str", "strings"), ("b", "bytes"), ("bytes", "bytes"), (" doubles ", "doubles"),
])
def test_input_type_aliases(alias, canonical):
    assert canonical_input_type(alias) == canonical


@pytest.mark.parametrize("bad", ["string2", "", "tensor", None, 3])
def test_bad_input_type_says_what_is_allowed(bad):
    with pytest.raises(ClipperException) as e:
        canonical_input_type(bad)
    assert "Invalid input_type" in str(e.value)
    assert "integers, floats, doubles, bytes, strings" in str(e.value)


@pytest.mark.parametrize("bad", ["My_Model", "-lead", "trail-", "has.dot", "a:b", "a,b", "", "x" * 64, None, "ünï"])
def test_bad_names_are_refused_with_the_rule(bad):
    with pytest.raises(ClipperException, match="lower case alphanumeric"):
        validate_name(bad, "application name")


def test_good_names_and_versions():
    assert validate_name("m-1") == "m-1"
    assert validate_version(3) == "3"
    with pytest.raises(ClipperException, match="model version"):
        validate_version("v.1")
    with pytest.raises(ClipperException):
        validate_version(True)


def test_name_from_function():
    def predict_Digits_v2(xs):
        return xs

    assert name_from_function(predict_Digits_v2) == "predict-digits-v2"
    with pytest.raises(ClipperException, match="pass name"):
        name_from_function(lambda xs: xs)


def test_integer_literal_is_accepted_for_doubles_and_floats():
    doubles = validate_input("doubles", [1, 2.5])
    assert doubles.dtype == np.float64 and doubles.tolist() == [1.0, 2.5]
    floats = validate_input("floats", [1])
    assert floats.dtype == np.float32 and floats.tolist() == [1.0]
    ints = validate_input("integers", [-(2**31), 2**31 - 1])
    assert ints.dtype == np.int32 and ints.tolist() == [-(2**31), 2**31 - 1]


def test_huge_integers_are_named():
    with pytest.raises(InputError, match=r"input\[1\] = 1000000000000000000000000 is not a 32-bit integer"):
        validate_input("integers", [1, 10**24])


@pytest.mark.parametrize("itype,x,msg", [
    ("doubles", "1.0", "JSON array"), ("doubles", [], "non-empty"), ("doubles", [1, "a"], r"\[1\] is str"),
    ("doubles", [True], "needs numbers"), ("integers", [1.5], "32-bit"), ("integers", [2**31], "32-bit"),
    ("strings", 5, "JSON string"), ("bytes", "!!notbase64", "base64"), ("bytes", [1], "base64 string"),
])
@pytest.mark.parametrize("may_hold_bools", [True, False])
def test_bad_inputs_name_the_problem(itype, x, msg, may_hold_bools):
    if x == [True]:
        may_hold_bools = True  # the hint is a promise; [True] breaks it
    with pytest.raises(InputError, match=msg):
        validate_input(itype, x, may_hold_bools=may_hold_bools)


@pytest.mark.parametrize("itype,x,dtype", [("doubles", [1, 2.5], "float64"), ("floats", [1.5], "float32"),
                                           ("integers", [7, -3], "int32")])
def test_fast_and_careful_paths_agree(itype, x, dtype):
    fast, careful = validate_input(itype, x, may_hold_bools=False), validate_input(itype, x)
    assert fast.dtype == careful.dtype == np.dtype(dtype) and fast.tolist() == careful.tolist()


def test_batches_are_numpy_of_the_right_dtype_and_never_padded():
    b = to_batch("doubles", [[1, 2], [3, 4]])
    assert b.dtype == np.float64 and b.shape == (2, 2)
    assert to_batch("integers", [[1], [2]]).dtype == np.int32
    assert to_batch("floats", [[1.5]]).dtype == np.float32
    ragged = to_batch("doubles", [[1.0], [2.0, 3.0]])
    assert isinstance(ragged, list) and [len(r) for r in ragged] == [1, 2]
    assert to_batch("strings", ["a", "b"]) == ["a", "b"]
    assert to_batch("bytes", [validate_input("bytes", "aGk=")]) == [b"hi"]
