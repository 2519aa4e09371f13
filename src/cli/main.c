#include "cli/cli.h"
#include "core/heap.h"

int main(int argc, char **argv)
{
    sl_heap_tune();
    return sl_cli_main(argc, argv);
}
