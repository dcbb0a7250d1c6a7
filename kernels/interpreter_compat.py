"""Lets Triton 3.6's interpreter (TRITON_INTERPRET=1) run loops under NumPy >= 2.4.

The interpreter keeps scalars as one-element arrays and converts them for Python's range()
with int(array), which NumPy 2.4 refuses for arrays of ndim > 0. Every kernel here loops
over runtime bounds, so without this the interpreter tests could not run. The patch is
applied only when the interpreter is on and the conversion actually fails, and only changes
that one conversion (to take the single element explicitly).
"""

import os

import numpy as np


def _int_of_one_element_array_fails() -> bool:
    try:
        int(np.array([1]))
        return False
    except TypeError:
        return True


def apply() -> None:
    if os.environ.get("TRITON_INTERPRET") != "1" or not _int_of_one_element_array_fails():
        return
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor
    if getattr(original, "_fastrnn_compat", False):
        return

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patch_lang_tensor._fastrnn_compat = True
    interpreter._patch_lang_tensor = patch_lang_tensor
