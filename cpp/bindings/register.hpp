// One register_* function per binding file; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace pylstm {
void register_network(pybind11::module_& m);
void register_runtime(pybind11::module_& m);
void register_stream(pybind11::module_& m);
void register_batcher(pybind11::module_& m);  // _core.CellBatcher (pylstm.StreamBatcher)
void register_capi(pybind11::module_& m);     // the C API capsule _C_API (pylstm_capi.h)
}  // namespace pylstm
