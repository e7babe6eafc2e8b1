/* placeholder so the object library is not empty */
int balancing_log_placeholder;
