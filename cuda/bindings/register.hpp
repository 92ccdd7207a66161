// One register_* function per binding file; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace pylstm {
namespace cuda {
void register_network(pybind11::module_& m);
}  // namespace cuda
}  // namespace pylstm
