// The canonical network from the list of layer dicts pylstm.network.Layer.to_core() makes: the
// input of both _core.Network and _cuda.Network.
#pragma once

#include <pybind11/pybind11.h>

#include "pylstm/network.hpp"

namespace pylstm {

// Throws std::invalid_argument / pybind11::type_error naming the layer and field.
NetworkDesc parse_network(const pybind11::list& layers);

}  // namespace pylstm
