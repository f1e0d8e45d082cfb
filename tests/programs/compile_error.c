/* Does not compile: the compiler's message must reach the client. */
int main(void)
{
    return undeclared_on_purpose;
}
