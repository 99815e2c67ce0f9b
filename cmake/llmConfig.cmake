# find_package(llm): llm.h as the INTERFACE target llm::llm. Installed by `make install`
# and by `cmake --install` into <prefix>/lib/cmake/llm/, so the header is in
# <prefix>/include, three directories up from here.
#
#   find_package(llm 0.1 REQUIRED)
#   target_link_libraries(app PRIVATE llm::llm)
#
# One .c file of the program defines LLM_IMPLEMENTATION before including llm.h.
get_filename_component(_llm_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET llm::llm)
  add_library(llm::llm INTERFACE IMPORTED)
  set_target_properties(llm::llm PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_llm_prefix}/include")
  if(NOT WIN32)   # Windows: the Win32 thread layer and the C runtime's math need nothing
    include(CMakeFindDependencyMacro)
    find_dependency(Threads)
    set_property(TARGET llm::llm APPEND PROPERTY INTERFACE_LINK_LIBRARIES Threads::Threads m)
  endif()
endif()
unset(_llm_prefix)
