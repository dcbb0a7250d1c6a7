// Chooses the kernels for this CPU at run time and spreads batch rows over threads.
#pragma once

#include <string>
#include <vector>

#include "lstm_api.h"

namespace fastrnn_cpu {

enum DType : int { kFloat32 = 0, kFloat64 = 1 };

// The instruction set in use ("avx512", "avx2" or "generic"): the best this CPU has, unless
// the environment variable FASTRNN_CPU_ISA or set_isa() names another one it supports.
std::string current_isa();
std::vector<std::string> available_isas();
void set_isa(const std::string& name);  // throws std::invalid_argument for an unknown/unsupported one

const KernelSet& kernel_set(int dtype);

long packed_gates_numel(int dtype, long H, long K);
long packed_panels_numel(int dtype, long K, long N);

// The sequence entry points take W_hh (4H, R) and W_hr (P, H) as stored by torch (args.w_hh,
// args.w_hr) and pack them for this call: packing is O(weights), the recurrence O(T * B * weights), and a packed
// copy kept across calls could go stale (writes through `tensor.data` bypass version counters).
void run_forward(int dtype, ForwardArgs args, int max_threads);
void run_backward(int dtype, BackwardArgs args, int max_threads);
// The single step takes weights already packed (the caller caches them per weight version).
void run_cell(int dtype, const CellArgs& args, int max_threads);

}  // namespace fastrnn_cpu
