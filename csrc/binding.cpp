// fastrnn._C: the CPU kernels bound with pybind11.
//
// Tensors cross as raw data pointers (Python ints) plus sizes. This keeps the extension free
// of torch's C++ ABI, so one build works with any torch, and keeps a call to a few hundred
// nanoseconds. The Python side (fastrnn/cpp_backend.py) checks dtypes, devices, shapes and
// contiguity before any call: nothing here can check a raw pointer.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_dispatch.h"

namespace py = pybind11;
using namespace fastrnn_cpu;

namespace {

template <typename P>
P ptr(std::uintptr_t address) { return reinterpret_cast<P>(address); }

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

  m.def("forward", [](int dtype, long T, long B, long H, long R, long P, std::uintptr_t xproj,
                      std::uintptr_t w_hh, std::uintptr_t w_hr, std::uintptr_t h0, std::uintptr_t c0,
                      std::uintptr_t resets, std::uintptr_t lengths, std::uintptr_t y, std::uintptr_t h_n,
                      std::uintptr_t c_n, std::uintptr_t gates_out, std::uintptr_t cells_out,
                      std::uintptr_t hidden_out, int threads) {
    ForwardArgs a{T, B, H, R, P, ptr<const void*>(xproj), nullptr, nullptr,
                  ptr<const void*>(h0), ptr<const void*>(c0), ptr<const unsigned char*>(resets),
                  ptr<const long long*>(lengths), ptr<void*>(y), ptr<void*>(h_n), ptr<void*>(c_n),
                  ptr<void*>(gates_out), ptr<void*>(cells_out), ptr<void*>(hidden_out)};
    py::gil_scoped_release release;
    run_forward(dtype, a, ptr<const void*>(w_hh), ptr<const void*>(w_hr), threads);
  });

  m.def("backward", [](int dtype, long T, long B, long H, long R, long P, std::uintptr_t grad_y,
                       std::uintptr_t grad_h_n, std::uintptr_t grad_c_n, std::uintptr_t w_hh,
                       std::uintptr_t w_hr, std::uintptr_t c0, std::uintptr_t resets, std::uintptr_t lengths,
                       std::uintptr_t gates, std::uintptr_t cells, std::uintptr_t dxproj, std::uintptr_t dh0,
                       std::uintptr_t dc0, std::uintptr_t dr, int threads) {
    BackwardArgs a{T, B, H, R, P, ptr<const void*>(grad_y), ptr<const void*>(grad_h_n), ptr<const void*>(grad_c_n),
                   nullptr, nullptr, ptr<const void*>(c0),
                   ptr<const unsigned char*>(resets), ptr<const long long*>(lengths), ptr<const void*>(gates),
                   ptr<const void*>(cells), ptr<void*>(dxproj), ptr<void*>(dh0), ptr<void*>(dc0), ptr<void*>(dr)};
    py::gil_scoped_release release;
    run_backward(dtype, a, ptr<const void*>(w_hh), ptr<const void*>(w_hr), threads);
  });

  m.def("cell", [](int dtype, long B, long I, long H, long R, long P, std::uintptr_t x, std::uintptr_t w_ih_gates,
                   std::uintptr_t h, std::uintptr_t w_hh_gates, std::uintptr_t bias, std::uintptr_t c,
                   std::uintptr_t w_proj, std::uintptr_t resets, std::uintptr_t h_out, std::uintptr_t c_out,
                   int threads) {
    CellArgs a{B, I, H, R, P, ptr<const void*>(x), ptr<const void*>(w_ih_gates), ptr<const void*>(h),
               ptr<const void*>(w_hh_gates), ptr<const void*>(bias), ptr<const void*>(c), ptr<const void*>(w_proj),
               ptr<const unsigned char*>(resets), ptr<void*>(h_out), ptr<void*>(c_out)};
    run_cell(dtype, a, threads);  // microseconds: releasing the GIL would cost more than it frees
  });
}
