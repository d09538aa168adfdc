// fastmlp._core: the module. The bindings themselves are in kernels.cpp and training.cpp;
// their argument checks in args.h. No file outside csrc/bindings/ sees Python.
#include <pybind11/pybind11.h>

#include <string>

#include "kernels/cpu.h"
#include "kernels/kernel_table.h"

namespace py = pybind11;

#ifndef FASTMLP_VERSION
#define FASTMLP_VERSION "dev"
#endif

namespace fastmlp::bindings {

void bind_kernels(py::module_& m);   // kernels.cpp
void bind_training(py::module_& m);  // training.cpp

namespace {

py::dict build_info() {
  py::dict info;
  info["version"] = FASTMLP_VERSION;
  info["isa"] = isa_name(active_isa());
  info["cpu_isa"] = isa_name(detected_isa());
#ifdef FASTMLP_X86
  info["compiled_isas"] = py::make_tuple("generic", "avx2", "avx512");
#else
  info["compiled_isas"] = py::make_tuple("generic");
#endif
  info["num_threads"] = num_threads();
  return info;
}

}  // namespace

}  // namespace fastmlp::bindings

using namespace fastmlp;
using namespace fastmlp::bindings;

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastmlp's C++ kernels; use them through fastmlp.get_backend('native').";
  // An unknown FASTMLP_ISA throws here, and the import fails with its message.
  set_isa_cap(isa_cap_from_env());
  m.attr("__version__") = FASTMLP_VERSION;
  m.def("build_info", &build_info, "Version, active ISA, CPU ISA, compiled ISAs, threads.");
  m.def("set_isa", [](const std::string& name) { return isa_name(set_isa_cap(parse_isa(name, "name"))); },
        py::arg("name"), "Cap the kernels' ISA; returns the ISA now active.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &num_threads);
  bind_kernels(m);
  bind_training(m);
  // For fastmlp.cython_kernels, the Cython API: it calls these pointers, never a copy.
  static const KernelTable kernel_table{kernels_for<float>(), kernels_for<double>()};
  m.attr("_kernel_table") = py::capsule(&kernel_table, kKernelTableCapsule);
}
