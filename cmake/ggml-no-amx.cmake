# Included right after ggml's project() call (CMAKE_PROJECT_ggml_INCLUDE in .cargo/config.toml;
# llama-cpp-sys-2 passes CMAKE_* variables to CMake).
#
# ggml's AMX matrix kernels segfault on Intel Sapphire Rapids-class hosts (llama.cpp #20824; the
# fix, PR #26954, is not in the llama.cpp that llama-cpp-sys-2 vendors). GGML_CPU_ALL_VARIANTS
# always builds a `sapphirerapids` variant with them, and no ggml option removes it, so once ggml
# has defined its targets this drops the AMX compiler flags and defines from every CPU target:
# no library the build produces can hold an AMX instruction (scripts/check-no-amx.sh proves it
# from the objects). The variant that is left is zen4's instruction set; build.rs does not ship it.
cmake_minimum_required(VERSION 3.19) # cmake_language(DEFER)

function(thinkscale_strip_amx dir)
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t IN LISTS targets)
    if(t MATCHES "^ggml-cpu")
      foreach(prop COMPILE_OPTIONS COMPILE_DEFINITIONS)
        get_target_property(values ${t} ${prop})
        if(values)
          list(FILTER values EXCLUDE REGEX "^-mamx|AMX")
          set_property(TARGET ${t} PROPERTY ${prop} "${values}")
        endif()
      endforeach()
    endif()
  endforeach()
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    thinkscale_strip_amx("${sub}")
  endforeach()
endfunction()

# Runs when ggml's CMakeLists.txt ends, after every CPU variant target exists.
cmake_language(DEFER CALL thinkscale_strip_amx "${CMAKE_CURRENT_SOURCE_DIR}")
