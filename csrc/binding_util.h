// What binding.cpp and rl_heads.cpp share: tensors read through Python (never integer
// addresses from the caller), and argument structs that hold the tensors they point to.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace fastrnn_binding {

namespace py = pybind11;

// A tensor's address (None: 0, the kernels' "absent"): its data_ptr() called through the C API
// with the method's name interned once. pybind11's attr("data_ptr")() builds the name string and a
// bound method per call, about three times the cost, and one fused step reads a dozen addresses.
inline std::uintptr_t address(const py::handle& tensor) {
  if (tensor.is_none()) return 0;
  static PyObject* const name = PyUnicode_InternFromString("data_ptr");  // first called under the GIL
  PyObject* result = PyObject_CallMethodNoArgs(tensor.ptr(), name);
  if (!result) throw py::error_already_set();
  const unsigned long long value = PyLong_AsUnsignedLongLong(result);
  Py_DECREF(result);
  if (value == static_cast<unsigned long long>(-1) && PyErr_Occurred()) throw py::error_already_set();
  return static_cast<std::uintptr_t>(value);
}

template <typename P>
P ptr(std::uintptr_t address) { return reinterpret_cast<P>(address); }

// A kernel argument struct together with the tensors whose addresses it carries: setting a
// pointer field stores the tensor, so the struct's addresses stay valid while it exists.
template <typename S>
struct Holding {
  S args{};
  std::vector<py::object> tensors;
};

// fastrnn.rl's pieces of the module (csrc/rl_heads.cpp, csrc/rl_actor_critic.cpp, csrc/rl_inputs.cpp).
void bind_rl(py::module_& m);
void bind_rl_actor_critic(py::module_& m);
void bind_rl_inputs(py::module_& m);

}  // namespace fastrnn_binding
