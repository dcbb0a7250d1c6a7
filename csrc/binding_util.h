// What binding.cpp and rl_heads.cpp share: tensors read through Python (never integer
// addresses from the caller), and argument structs that hold the tensors they point to.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace fastrnn_binding {

namespace py = pybind11;

// A tensor's address (None: 0, the kernels' "absent").
inline std::uintptr_t address(const py::handle& tensor) {
  if (tensor.is_none()) return 0;
  return tensor.attr("data_ptr")().cast<std::uintptr_t>();
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
