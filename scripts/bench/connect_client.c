/* connect benchmark client (placeholder) */
int main(void) { return 0; }
