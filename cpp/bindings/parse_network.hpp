// The canonical network from the list of layer dicts pylstm's Layer.to_core() makes (the input
// of _core.Network and of the _cuda backend factory), and back (Network.unpack()).
#pragma once

#include <pybind11/pybind11.h>

#include "pylstm/network.hpp"

namespace pylstm {

// Throws std::invalid_argument / pybind11::type_error naming the layer and field.
NetworkDesc parse_network(const pybind11::list& layers);

// The layer dicts of `net`, as Layer.to_core() makes them: numpy float32 arrays shaped w [G*H, I],
// r [G*H, Hout], bias_w / bias_r [G*H], peephole [3*H] (or None), proj [P, H] (or None).
pybind11::list network_to_python(const NetworkDesc& net);

}  // namespace pylstm
