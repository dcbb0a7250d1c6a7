// fastrnn.rl's meta-RL input row (fastrnn/rl/inputs.py): [observation, one-hot previous action,
// previous reward or other signals], zeros after the observation in rows that start an episode,
// written in one pass. At an agent's sizes (tens of rows, a few columns) the same row built
// from torch ops (an index into the one-hot table, an unsqueeze per signal, a cat, and a
// masked fill on steps where an episode starts) is three to five calls of microseconds of
// dispatch each, once per environment step, for arithmetic that takes well under one here.
//
// The Python side checks dtypes, shapes and contiguity before the call; here a row's action is
// checked against num_actions (it indexes the row).
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "binding_util.h"
#include "cpu_dispatch.h"
#include "rl_inputs.h"

namespace py = pybind11;
using namespace fastrnn_cpu;

namespace fastrnn_binding {

void bind_rl_inputs(py::module_& m) {
  m.def("write_next_input", [](int dtype, long batch, long O, long A, long S, const py::object& obs,
                               const py::object& actions, const py::object& first, const py::object& second,
                               const py::object& reset, const py::object& out) {
    if (S < 0 || S > 2) throw std::invalid_argument("write_next_input: at most two signal columns");
    auto* a = ptr<const long long*>(address(actions));
    auto* r = ptr<const unsigned char*>(address(reset));
    if (dtype == kFloat32)
      write_input_row<float>(batch, O, A, S, ptr<const float*>(address(obs)), a, ptr<const float*>(address(first)),
                              ptr<const float*>(address(second)), r, ptr<float*>(address(out)));
    else
      write_input_row<double>(batch, O, A, S, ptr<const double*>(address(obs)), a,
                               ptr<const double*>(address(first)), ptr<const double*>(address(second)), r,
                               ptr<double*>(address(out)));
  }, py::arg("dtype"), py::arg("batch"), py::arg("O"), py::arg("A"), py::arg("S"), py::arg("obs"),
     py::arg("actions"), py::arg("first"), py::arg("second"), py::arg("reset"), py::arg("out"));
}

}  // namespace fastrnn_binding
