// Process-wide runtime settings and build information.
#include <pybind11/stl.h>

#include "dispatch.hpp"
#include "pylstm/network.hpp"
#include "register.hpp"
#include "thread_pool.hpp"

namespace py = pybind11;

namespace pylstm {

void register_runtime(py::module_& m) {
  // The one source of truth for these, read by pylstm/convert/canonical.py and pylstm/__init__:
  // the version (CMake reads it from pyproject.toml), the activations the kernels implement with
  // the number of parameters each reads, and the canonical gate orders.
  m.attr("__version__") = PYLSTM_VERSION;
  py::dict activations;
  for (const auto& [name, params] : activation_table()) activations[py::str(name)] = params;
  m.attr("ACTIVATIONS") = activations;
  py::dict gate_orders;
  for (auto [name, cell] : {std::pair{"lstm", CellKind::LSTM}, std::pair{"gru", CellKind::GRU},
                            std::pair{"rnn", CellKind::RNN}}) {
    gate_orders[name] = canonical_gate_order(cell);
  }
  m.attr("GATE_ORDERS") = gate_orders;
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("num_threads must be >= 1, got " + std::to_string(n));
        py::gil_scoped_release release;  // waits for running calls to finish
        ThreadPool::global().set_num_threads(n);
      },
      py::arg("n"));
  m.def("get_num_threads", [] { return ThreadPool::global().num_threads(); });
  m.def("_leave_cpus_in_this_thread", &ThreadPool::leave_cpus_in_this_thread, py::arg("cpus"),
        "Teams of calls made from this thread leave this many CPUs to other work (at least "
        "one member); 0: none. The stream batcher's worker leaves one to the Python side.");
  m.def("available_cpus", &available_cpus);
  m.def("isa_for_features", &isa_for_features, py::arg("avx512"), py::arg("avx2"),
        "The instruction set 'auto' picks on a CPU with these features.");
  m.def("supported_isas", &supported_isas,
        "Instruction sets with kernels in this build that this CPU can run, best first.");
  m.def(
      "fma_peak_gflops",
      [](const std::string& isa, int threads, double seconds) {
        py::gil_scoped_release release;
        return fma_peak_gflops(isa, threads, seconds);
      },
      py::arg("isa"), py::arg("threads"), py::arg("seconds") = 0.05,
      "fp32 GFLOP/s of `threads` threads at once running the instruction set's independent "
      "FMA chains (the machine's multiply-add peak; the bench's % peak).");
  // The thread pool's per-call team policy (thread_pool.cpp), for tests.
  m.def("_choose_team", &choose_team, py::arg("useful"), py::arg("call_macs"),
        py::arg("workers_asleep"), py::arg("backing_off"));
  m.def("_updated_contention", &updated_contention, py::arg("average"), py::arg("job_ns"),
        py::arg("wait_ns"));
  m.def("_is_contended", &is_contended, py::arg("average"));
  m.def(
      "_last_team_call",
      [] {
        const ThreadPool::LastCall c = ThreadPool::global().last_call();
        py::dict d;
        d["job_ns"] = c.job_ns;
        d["final_wait_ns"] = c.final_wait_ns;
        d["barriers"] = c.waits.barriers;
        d["long_wait_ns"] = c.waits.long_wait_ns;
        d["total_wait_ns"] = c.waits.total_wait_ns;
        d["max_wait_ns"] = c.waits.max_wait_ns;
        d["first_wait_ns"] = c.waits.first_wait_ns;
        d["backing_off"] = c.contended;
        d["shrunk"] = c.shrunk;
        d["survivor"] = c.survivor;
        d["started_alone"] = c.started_alone;
        d["members"] = c.members;
        return d;
      },
      "The last team call's job time and the caller's barrier waits (tuning and tests).");
}

}  // namespace pylstm
