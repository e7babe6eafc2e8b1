/* inspect (placeholder) */
#include <stdio.h>
int main(void) { fputs("inspect: not built yet\n", stderr); return 2; }
