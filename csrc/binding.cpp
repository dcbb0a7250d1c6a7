// fastrnn._C: the CPU kernels bound with pybind11.
//
// Tensors cross as raw data pointers (Python ints) plus sizes, in named structs (lstm_api.h). This keeps the extension free
// of torch's C++ ABI, so one build works with any torch, and keeps a call to a few hundred
// nanoseconds. The Python side (fastrnn/cpp_backend.py) checks dtypes, devices, shapes and
// contiguity before any call: nothing here can check a raw pointer.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

#include "cpu_dispatch.h"

namespace py = pybind11;
using namespace fastrnn_cpu;

namespace {

template <typename P>
P ptr(std::uintptr_t address) { return reinterpret_cast<P>(address); }

// A pointer field read and written from Python as an int address.
template <typename S, typename P>
void pointer_field(py::class_<S>& cls, const char* name, P S::*member) {
  cls.def_property(name, [member](const S& s) { return reinterpret_cast<std::uintptr_t>(s.*member); },
                   [member](S& s, std::uintptr_t address) { s.*member = reinterpret_cast<P>(address); });
}

template <typename S>
void size_fields(py::class_<S>& cls, std::initializer_list<std::pair<const char*, long S::*>> fields) {
  for (auto [name, member] : fields) cls.def_readwrite(name, member);
}

// One step's arguments: the cached weights' struct with this call's tensors.
CellArgs step_args(const CellArgs& weights, long batch, std::uintptr_t x, std::uintptr_t h, std::uintptr_t c,
                   std::uintptr_t resets, std::uintptr_t h_out, std::uintptr_t c_out) {
  CellArgs a = weights;
  a.batch = batch;
  a.x = ptr<const void*>(x);
  a.h = ptr<const void*>(h);
  a.c = ptr<const void*>(c);
  a.resets = ptr<const unsigned char*>(resets);
  a.h_out = ptr<void*>(h_out);
  a.c_out = ptr<void*>(c_out);
  return a;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastrnn's fused LSTM recurrence for CPUs (float32 and float64)";

  m.def("isa", &current_isa, "The instruction set the kernels use now.");
  m.def("available_isas", &available_isas, "Instruction sets this CPU can run, best first.");
  m.def("set_isa", &set_isa, py::arg("name"), "Use the kernels built for another instruction set.");
  m.def("vector_width", [](int dtype) { return kernel_set(dtype).width; }, py::arg("dtype"));
  m.def("packed_gates_numel", &packed_gates_numel, py::arg("dtype"), py::arg("H"), py::arg("K"));
  m.def("packed_panels_numel", &packed_panels_numel, py::arg("dtype"), py::arg("K"), py::arg("N"));

  m.def("bytes_equal", [](const std::vector<std::uintptr_t>& triples) {
    // (a, b, nbytes) triples: one call checks every weight of a step (see weight_cache.py).
    for (size_t i = 0; i + 2 < triples.size(); i += 3)
      if (std::memcmp(ptr<const void*>(triples[i]), ptr<const void*>(triples[i + 1]), triples[i + 2]) != 0)
        return false;
    return true;
  }, py::arg("triples"),
     "Bitwise equality of buffer pairs given as flat (a, b, nbytes) triples (NaN equals itself).");

  m.def("pack_gates", [](int dtype, std::uintptr_t src, long H, long K, std::uintptr_t dst) {
    kernel_set(dtype).pack_gates(ptr<const void*>(src), H, K, ptr<void*>(dst));
  }, py::arg("dtype"), py::arg("src"), py::arg("H"), py::arg("K"), py::arg("dst"));

  m.def("pack_panels", [](int dtype, std::uintptr_t src, long K, long N, bool src_is_nk, std::uintptr_t dst) {
    kernel_set(dtype).pack_panels(ptr<const void*>(src), K, N, src_is_nk, ptr<void*>(dst));
  }, py::arg("dtype"), py::arg("src"), py::arg("K"), py::arg("N"), py::arg("src_is_nk"), py::arg("dst"));

  // The kernels' argument structs, filled by name from Python (fastrnn/cpp_backend.py):
  // sizes as ints, tensors as their data_ptr() (0 for none).
  auto forward_args = py::class_<ForwardArgs>(m, "ForwardArgs").def(py::init([] { return ForwardArgs{}; }));
  size_fields(forward_args, {{"steps", &ForwardArgs::steps}, {"batch", &ForwardArgs::batch},
      {"hidden_size", &ForwardArgs::hidden_size}, {"out_size", &ForwardArgs::out_size}, {"proj", &ForwardArgs::proj}});
  pointer_field(forward_args, "xproj", &ForwardArgs::xproj);
  pointer_field(forward_args, "w_hh", &ForwardArgs::w_hh);
  pointer_field(forward_args, "w_hr", &ForwardArgs::w_hr);
  pointer_field(forward_args, "h0", &ForwardArgs::h0);
  pointer_field(forward_args, "c0", &ForwardArgs::c0);
  pointer_field(forward_args, "resets", &ForwardArgs::resets);
  pointer_field(forward_args, "lengths", &ForwardArgs::lengths);
  pointer_field(forward_args, "y", &ForwardArgs::y);
  pointer_field(forward_args, "h_n", &ForwardArgs::h_n);
  pointer_field(forward_args, "c_n", &ForwardArgs::c_n);
  pointer_field(forward_args, "gates", &ForwardArgs::gates);
  pointer_field(forward_args, "cells", &ForwardArgs::cells);
  pointer_field(forward_args, "hidden", &ForwardArgs::hidden);

  auto backward_args = py::class_<BackwardArgs>(m, "BackwardArgs").def(py::init([] { return BackwardArgs{}; }));
  size_fields(backward_args, {{"steps", &BackwardArgs::steps}, {"batch", &BackwardArgs::batch},
      {"hidden_size", &BackwardArgs::hidden_size}, {"out_size", &BackwardArgs::out_size}, {"proj", &BackwardArgs::proj}});
  pointer_field(backward_args, "grad_y", &BackwardArgs::grad_y);
  pointer_field(backward_args, "grad_h_n", &BackwardArgs::grad_h_n);
  pointer_field(backward_args, "grad_c_n", &BackwardArgs::grad_c_n);
  pointer_field(backward_args, "w_hh", &BackwardArgs::w_hh);
  pointer_field(backward_args, "w_hr", &BackwardArgs::w_hr);
  pointer_field(backward_args, "c0", &BackwardArgs::c0);
  pointer_field(backward_args, "resets", &BackwardArgs::resets);
  pointer_field(backward_args, "lengths", &BackwardArgs::lengths);
  pointer_field(backward_args, "gates", &BackwardArgs::gates);
  pointer_field(backward_args, "cells", &BackwardArgs::cells);
  pointer_field(backward_args, "dxproj", &BackwardArgs::dxproj);
  pointer_field(backward_args, "dh0", &BackwardArgs::dh0);
  pointer_field(backward_args, "dc0", &BackwardArgs::dc0);
  pointer_field(backward_args, "dy_total", &BackwardArgs::dy_total);

  // The step's weights, packed once per weight version: a struct built by name when the
  // weights are packed (cached with them); the per-call tensors pass as named arguments,
  // which costs a fraction of filling a struct field by field (the step takes microseconds).
  auto cell_weights = py::class_<CellArgs>(m, "CellWeights").def(py::init([] { return CellArgs{}; }));
  size_fields(cell_weights, {{"input_size", &CellArgs::input_size}, {"hidden_size", &CellArgs::hidden_size},
      {"out_size", &CellArgs::out_size}, {"proj", &CellArgs::proj}});
  pointer_field(cell_weights, "w_ih_gates", &CellArgs::w_ih_gates);
  pointer_field(cell_weights, "w_hh_gates", &CellArgs::w_hh_gates);
  pointer_field(cell_weights, "bias", &CellArgs::bias);
  pointer_field(cell_weights, "w_proj", &CellArgs::w_proj);

  m.def("forward", [](int dtype, ForwardArgs a, int threads) {
    py::gil_scoped_release release;
    run_forward(dtype, a, threads);
  }, py::arg("dtype"), py::arg("args"), py::arg("threads"));

  m.def("backward", [](int dtype, BackwardArgs a, int threads) {
    py::gil_scoped_release release;
    run_backward(dtype, a, threads);
  }, py::arg("dtype"), py::arg("args"), py::arg("threads"));

  m.def("cell", [](int dtype, const CellArgs& weights, long batch, std::uintptr_t x, std::uintptr_t h,
                   std::uintptr_t c, std::uintptr_t resets, std::uintptr_t h_out, std::uintptr_t c_out, int threads) {
    // microseconds: releasing the GIL would cost more than it frees
    run_cell(dtype, step_args(weights, batch, x, h, c, resets, h_out, c_out), threads);
  }, py::arg("dtype"), py::arg("weights"), py::arg("batch"), py::arg("x"), py::arg("h"), py::arg("c"),
     py::arg("resets"), py::arg("h_out"), py::arg("c_out"), py::arg("threads"));

  // The step followed by a linear readout and a greedy choice (CellArgs' head fields).
  m.def("cell_heads", [](int dtype, const CellArgs& weights, long batch, std::uintptr_t x, std::uintptr_t h,
                         std::uintptr_t c, std::uintptr_t resets, std::uintptr_t h_out, std::uintptr_t c_out,
                         std::uintptr_t head_w, std::uintptr_t head_addend, long head_size, long num_actions,
                         std::uintptr_t head_out, std::uintptr_t actions, int threads) {
    CellArgs a = step_args(weights, batch, x, h, c, resets, h_out, c_out);
    a.head_w = ptr<const void*>(head_w);
    a.head_addend = ptr<const void*>(head_addend);
    a.head_size = head_size;
    a.num_actions = num_actions;
    a.head_out = ptr<void*>(head_out);
    a.actions = ptr<long long*>(actions);
    run_cell(dtype, a, threads);
  }, py::arg("dtype"), py::arg("weights"), py::arg("batch"), py::arg("x"), py::arg("h"), py::arg("c"),
     py::arg("resets"), py::arg("h_out"), py::arg("c_out"), py::arg("head_w"), py::arg("head_addend"),
     py::arg("head_size"), py::arg("num_actions"), py::arg("head_out"), py::arg("actions"), py::arg("threads"));
}
