"""Courts: judicial freezes and deductions, restoration orders, their certificates."""
