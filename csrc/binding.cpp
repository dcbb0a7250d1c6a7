// fastrnn._C: the CPU kernels bound with pybind11.
//
// Tensors cross as Python objects, never as integer addresses: every entry point takes the
// tensors themselves (or None), reads their data_ptr() here, and holds them (as arguments of
// the call, or inside the argument object that carries their addresses) for as long as the
// kernel may read them. So no caller can hand the kernels the address of a temporary that
// Python frees before the call returns: the lifetime is the binding's, not each call site's.
// Reading data_ptr() through Python keeps the extension free of torch's C++ ABI, so one build
// works with any torch, and keeps a call to a few hundred nanoseconds.
//
// The Python side (fastrnn/cpp_backend.py) checks dtypes, devices, shapes and contiguity
// before any call: the kernels read each tensor as a dense row-major block.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "binding_util.h"
#include "cpu_dispatch.h"

namespace py = pybind11;
using namespace fastrnn_cpu;
using namespace fastrnn_binding;

namespace {

// A pointer field set from Python with a tensor (or None); reading it returns that tensor.
template <typename S, typename P>
void tensor_field(py::class_<Holding<S>>& cls, const char* name, P S::*member, std::size_t& slots) {
  const std::size_t slot = slots++;
  cls.def_property(name,
      [slot](const Holding<S>& h) -> py::object {
        return slot < h.tensors.size() && h.tensors[slot] ? h.tensors[slot] : py::none();
      },
      [member, slot](Holding<S>& h, py::object tensor) {
        h.args.*member = ptr<P>(address(tensor));
        if (h.tensors.size() <= slot) h.tensors.resize(slot + 1);
        h.tensors[slot] = std::move(tensor);
      });
}

template <typename S>
void size_fields(py::class_<Holding<S>>& cls, std::initializer_list<std::pair<const char*, long S::*>> fields) {
  for (auto [name, member] : fields)
    cls.def_property(name, [member](const Holding<S>& h) { return h.args.*member; },
                     [member](Holding<S>& h, long value) { h.args.*member = value; });
}

template <typename S>
py::class_<Holding<S>> holding_class(py::module_& m, const char* name) {
  return py::class_<Holding<S>>(m, name).def(py::init([] { return Holding<S>{}; }));
}

// One step's arguments: the bound weights' struct with this call's tensors.
CellArgs step_args(const Holding<CellArgs>& weights, long batch, const py::handle& x, const py::handle& h,
                   const py::handle& c, const py::handle& resets, const py::handle& h_out, const py::handle& c_out) {
  CellArgs a = weights.args;
  a.batch = batch;
  a.x = ptr<const void*>(address(x));
  a.h = ptr<const void*>(address(h));
  a.c = ptr<const void*>(address(c));
  a.resets = ptr<const unsigned char*>(address(resets));
  a.h_out = ptr<void*>(address(h_out));
  a.c_out = ptr<void*>(address(c_out));
  return a;
}

// Weights and their bitwise snapshots, held together: equal() compares every pair with one
// memcmp each (the packed-weight cache's check that the weights were not written since).
class Snapshots {
 public:
  explicit Snapshots(const std::vector<std::pair<py::object, py::object>>& pairs) {
    for (const auto& [source, snapshot] : pairs) {
      const auto nbytes = snapshot.attr("numel")().cast<std::size_t>() * snapshot.attr("element_size")().cast<std::size_t>();
      if (source.attr("numel")().cast<std::size_t>() * source.attr("element_size")().cast<std::size_t>() != nbytes)
        throw std::invalid_argument("Snapshots: a source and its snapshot differ in size");
      spans_.push_back({address(source), address(snapshot), nbytes});
      held_.push_back(source);
      held_.push_back(snapshot);
    }
  }
  bool equal() const {
    for (const auto& s : spans_)
      if (s.nbytes && std::memcmp(ptr<const void*>(s.source), ptr<const void*>(s.snapshot), s.nbytes) != 0) return false;
    return true;
  }

 private:
  struct Span { std::uintptr_t source, snapshot; std::size_t nbytes; };
  std::vector<Span> spans_;
  std::vector<py::object> held_;
};

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastrnn's fused LSTM recurrence for CPUs (float32 and float64)";

  m.def("isa", &current_isa, "The instruction set the kernels use now.");
  m.def("available_isas", &available_isas, "Instruction sets this CPU can run, best first.");
  m.def("set_isa", &set_isa, py::arg("name"), "Use the kernels built for another instruction set.");
  m.def("vector_width", [](int dtype) { return kernel_set(dtype).width; }, py::arg("dtype"));
  m.def("packed_gates_numel", &packed_gates_numel, py::arg("dtype"), py::arg("H"), py::arg("K"));
  m.def("packed_panels_numel", &packed_panels_numel, py::arg("dtype"), py::arg("K"), py::arg("N"));

  py::class_<Snapshots>(m, "Snapshots")
      .def(py::init<const std::vector<std::pair<py::object, py::object>>&>(), py::arg("pairs"),
           "Holds (source, snapshot) tensor pairs of equal byte size, each contiguous.")
      .def("equal", &Snapshots::equal, "Whether every source still has its snapshot's bytes (NaN equals itself).");

  m.def("pack_gates", [](int dtype, const py::object& src, long H, long K, const py::object& dst) {
    kernel_set(dtype).pack_gates(ptr<const void*>(address(src)), H, K, ptr<void*>(address(dst)));
  }, py::arg("dtype"), py::arg("src"), py::arg("H"), py::arg("K"), py::arg("dst"));

  m.def("pack_panels", [](int dtype, const py::object& src, long K, long N, bool src_is_nk, const py::object& dst) {
    kernel_set(dtype).pack_panels(ptr<const void*>(address(src)), K, N, src_is_nk, ptr<void*>(address(dst)));
  }, py::arg("dtype"), py::arg("src"), py::arg("K"), py::arg("N"), py::arg("src_is_nk"), py::arg("dst"));

  // The kernels' argument structs, filled by name from Python (fastrnn/cpp_backend.py):
  // sizes as ints, tensors as tensors (None for none), which the struct holds.
  std::size_t slots = 0;
  auto forward_args = holding_class<ForwardArgs>(m, "ForwardArgs");
  size_fields(forward_args, {{"steps", &ForwardArgs::steps}, {"batch", &ForwardArgs::batch},
      {"hidden_size", &ForwardArgs::hidden_size}, {"out_size", &ForwardArgs::out_size}, {"proj", &ForwardArgs::proj},
      {"input_size", &ForwardArgs::input_size}});
  tensor_field(forward_args, "xproj", &ForwardArgs::xproj, slots);
  tensor_field(forward_args, "x", &ForwardArgs::x, slots);
  tensor_field(forward_args, "w_ih", &ForwardArgs::w_ih, slots);
  tensor_field(forward_args, "bias", &ForwardArgs::bias, slots);
  tensor_field(forward_args, "w_hh", &ForwardArgs::w_hh, slots);
  tensor_field(forward_args, "w_hr", &ForwardArgs::w_hr, slots);
  tensor_field(forward_args, "h0", &ForwardArgs::h0, slots);
  tensor_field(forward_args, "c0", &ForwardArgs::c0, slots);
  tensor_field(forward_args, "resets", &ForwardArgs::resets, slots);
  tensor_field(forward_args, "lengths", &ForwardArgs::lengths, slots);
  tensor_field(forward_args, "y", &ForwardArgs::y, slots);
  tensor_field(forward_args, "h_n", &ForwardArgs::h_n, slots);
  tensor_field(forward_args, "c_n", &ForwardArgs::c_n, slots);
  tensor_field(forward_args, "gates", &ForwardArgs::gates, slots);
  tensor_field(forward_args, "cells", &ForwardArgs::cells, slots);
  tensor_field(forward_args, "hidden", &ForwardArgs::hidden, slots);

  slots = 0;
  auto backward_args = holding_class<BackwardArgs>(m, "BackwardArgs");
  size_fields(backward_args, {{"steps", &BackwardArgs::steps}, {"batch", &BackwardArgs::batch},
      {"hidden_size", &BackwardArgs::hidden_size}, {"out_size", &BackwardArgs::out_size}, {"proj", &BackwardArgs::proj}});
  tensor_field(backward_args, "grad_y", &BackwardArgs::grad_y, slots);
  tensor_field(backward_args, "grad_h_n", &BackwardArgs::grad_h_n, slots);
  tensor_field(backward_args, "grad_c_n", &BackwardArgs::grad_c_n, slots);
  tensor_field(backward_args, "w_hh", &BackwardArgs::w_hh, slots);
  tensor_field(backward_args, "w_hr", &BackwardArgs::w_hr, slots);
  tensor_field(backward_args, "c0", &BackwardArgs::c0, slots);
  tensor_field(backward_args, "resets", &BackwardArgs::resets, slots);
  tensor_field(backward_args, "lengths", &BackwardArgs::lengths, slots);
  tensor_field(backward_args, "gates", &BackwardArgs::gates, slots);
  tensor_field(backward_args, "cells", &BackwardArgs::cells, slots);
  tensor_field(backward_args, "dxproj", &BackwardArgs::dxproj, slots);
  tensor_field(backward_args, "dh0", &BackwardArgs::dh0, slots);
  tensor_field(backward_args, "dc0", &BackwardArgs::dc0, slots);
  tensor_field(backward_args, "dy_total", &BackwardArgs::dy_total, slots);

  // The step's packed weights, made once per weight version and held by this struct; the
  // per-call tensors pass as arguments of cell(), which costs a fraction of filling a struct
  // field by field (the step takes microseconds).
  slots = 0;
  auto cell_weights = holding_class<CellArgs>(m, "CellWeights");
  size_fields(cell_weights, {{"input_size", &CellArgs::input_size}, {"hidden_size", &CellArgs::hidden_size},
      {"out_size", &CellArgs::out_size}, {"proj", &CellArgs::proj}});
  tensor_field(cell_weights, "w_ih_gates", &CellArgs::w_ih_gates, slots);
  tensor_field(cell_weights, "w_hh_gates", &CellArgs::w_hh_gates, slots);
  tensor_field(cell_weights, "bias", &CellArgs::bias, slots);
  tensor_field(cell_weights, "w_proj", &CellArgs::w_proj, slots);

  m.def("forward", [](int dtype, const Holding<ForwardArgs>& a, int threads) {
    ForwardArgs args = a.args;  // `a` (an argument of this call) holds every tensor it points to
    py::gil_scoped_release release;
    run_forward(dtype, args, threads);
  }, py::arg("dtype"), py::arg("args"), py::arg("threads"));

  m.def("backward", [](int dtype, const Holding<BackwardArgs>& a, int threads) {
    BackwardArgs args = a.args;
    py::gil_scoped_release release;
    run_backward(dtype, args, threads);
  }, py::arg("dtype"), py::arg("args"), py::arg("threads"));

  m.def("cell", [](int dtype, const Holding<CellArgs>& weights, long batch, const py::object& x, const py::object& h,
                   const py::object& c, const py::object& resets, const py::object& h_out, const py::object& c_out,
                   int threads) {
    // microseconds: releasing the GIL would cost more than it frees
    run_cell(dtype, step_args(weights, batch, x, h, c, resets, h_out, c_out), threads);
  }, py::arg("dtype"), py::arg("weights"), py::arg("batch"), py::arg("x"), py::arg("h"), py::arg("c"),
     py::arg("resets"), py::arg("h_out"), py::arg("c_out"), py::arg("threads"));

  bind_rl(m);  // fastrnn.rl's fused step + readout (csrc/rl_heads.cpp)
  bind_rl_actor_critic(m);  // fastrnn.rl's returns and actor-critic loss (csrc/rl_actor_critic.cpp)
  bind_rl_inputs(m);  // fastrnn.rl's meta-RL input row (csrc/rl_inputs.cpp)
}
