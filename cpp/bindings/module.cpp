// pylstm._core: the C++ engine. Bindings convert arguments and release the GIL; nothing else.
#include "register.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "pylstm C++ engine (use the pylstm package, not this module, directly)";
  pylstm::register_network(m);
  pylstm::register_runtime(m);
  pylstm::register_stream(m);
  pylstm::register_batcher(m);
  pylstm::register_capi(m);
}
