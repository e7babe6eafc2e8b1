/* balancing-agent (placeholder) */
#include <stdio.h>
int main(void) { fputs("balancing-agent: not built yet\n", stderr); return 2; }
